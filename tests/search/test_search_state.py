"""A search's state files (oracle.json, trial.json, fashion_lab.json): written whole or not at all, and a
broken one refused in one line naming it."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
from conftest import cli_env

from helpers.search import TINY

# A search that saves once, then hits a file-size limit (a full disk, for real: EFBIG from the kernel)
# while KerasTuner saves the told trial and the oracle.
FULL_DISK = """
import resource, signal, sys
from fashion_lab.search import study
from fashion_lab.search.keras_tuner import KerasTunerBackend
search = study.prepare_command(["search", "tuner=random", "tuner.max_trials=3", "tuner.directory=" + sys.argv[1],
                                "tracking.uri=" + sys.argv[2]])
backend = KerasTunerBackend(search)
trial = backend.ask(1)[0]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing the process
resource.setrlimit(resource.RLIMIT_FSIZE, (8, resource.RLIM_INFINITY))
try:
    backend.tell(trial.trial_id, score=0.8)
except Exception as error:  # KerasTuner's own writer raises TensorFlow's error type
    print("save failed:", type(error).__name__, getattr(error, "errno", ""))
"""


def test_a_full_disk_mid_save_leaves_the_previous_oracle_and_trial(tmp_path, store):
    run = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "tuner"), store], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env=cli_env())
    assert "save failed:" in run.stdout, run.stderr[-3000:]
    folder = tmp_path / "tuner" / "search"
    files = [folder / "oracle.json", *folder.glob("trial_*/trial.json")]
    assert len(files) == 2
    for path in files:  # each is the whole earlier save: the trial still RUNNING, not a cut-off file
        assert isinstance(json.loads(path.read_text()), dict), path
    assert not [p for p in folder.rglob("*.tmp")]  # no temporary file left behind


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    from fashion_lab.search import state_files

    path = tmp_path / "oracle.json"
    state_files.atomic_write_text(path, '{"old": 1}')
    mode = path.stat().st_mode & 0o777

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(state_files.os, "fsync", full)
    with pytest.raises(OSError):
        state_files.atomic_write_text(path, '{"new": 2}' * 1000)
    assert path.read_text() == '{"old": 1}' and os.listdir(tmp_path) == ["oracle.json"]
    assert mode == 0o666 & ~state_files._UMASK  # as open() would have made it, not mkstemp's 0600


@pytest.mark.parametrize("name,content,why", [("oracle.json", "", "is empty"),
                                              ("trial_0/trial.json", '{"trial_id": "0", "hyperp', "is not valid JSON"),
                                              ("fashion_lab.json", "", "is empty")])
def test_a_broken_state_file_is_refused_in_one_line_naming_it(name, content, why, run_cli, store, tmp_path):
    from fashion_lab.search import study

    args = ["search", *TINY, f"tuner.directory={tmp_path / 'tuner'}", f"tracking.uri={store}"]
    search = study.prepare_command(args)  # the same search: only the broken file stands in the way
    folder = search.directory
    (folder / "trial_0").mkdir(parents=True)
    (folder / ".made-by-fashion-lab").write_text("{}")
    study.save_state(search)
    (folder / "oracle.json").write_text("{}")
    (folder / name).write_text(content)
    result = run_cli("tune", *args)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("fashion-lab: error:")]
    assert len(lines) == 1 and f"{folder / name} {why}" in lines[0], result.stderr[-3000:]
