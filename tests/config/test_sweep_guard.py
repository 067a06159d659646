"""A sweep file is data (issue 23, item 1): real sweep files in $FASHION_LAB_SWEEPS_DIR, the real CLI.

Each refused file gets one line naming the key and the file, exit 2, before a run, a store or a
tuner folder exists, and before anything it names is touched. A broken file is ignored unless used.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from helpers.refusals import assert_refused, store_runs

PARAMS = """\
    sweeper:
      params:
        model.conv_dropout: 0.0,0.1
"""
# name -> (text, key the message must name)
FILES = {
    "overwrite": ("tuner:\n  directory: {tmp}\n  project: victim\n  overwrite: true\nhydra:\n" + PARAMS,
                  "tuner.overwrite"),
    "overwrite_swept": ("hydra:\n  sweeper:\n    params:\n      tuner.overwrite: true,false\n", "tuner.overwrite"),
    "job_logging": ("hydra:\n  job_logging:\n    version: 1\n    handlers:\n      f:\n        class: logging.FileHandler\n"
                    "        filename: {tmp}/bashrc\n    root:\n      handlers: [f]\n" + PARAMS, "hydra.job_logging"),
    "hydra_logging": ("hydra:\n  hydra_logging:\n    version: 1\n    handlers:\n      f:\n        '()': logging.FileHandler\n"
                      "        filename: {tmp}/bashrc\n" + PARAMS, "hydra.hydra_logging"),
    "own_callback": ("hydra:\n  callbacks:\n    again:\n      _target_: fashion_lab.sweeps.campaign.Campaign\n" + PARAMS,
                     "hydra.callbacks"),
    "run_dir": ("hydra:\n  run:\n    dir: {tmp}/elsewhere\n" + PARAMS, "hydra.run"),
    "sweep_dir": ("hydra:\n  sweep:\n    dir: {tmp}/elsewhere\n" + PARAMS, "hydra.sweep"),
    "launcher_setup": ("hydra:\n  launcher:\n    setup: ['touch {tmp}/pwned']\n" + PARAMS, "hydra.launcher.setup"),
    "os_via_package": ("trainer:\n  x:\n    _target_: fashion_lab.config.os.system\n    _args_: ['touch {tmp}/pwned']\n"
                       "hydra:\n" + PARAMS, "fashion_lab.config.os.system"),
    "own_function": ("x:\n  _target_: fashion_lab.search.study.check_resumable\nhydra:\n" + PARAMS,
                     "fashion_lab.search.study.check_resumable"),
    "logging_group": ("defaults:\n  - override /hydra/job_logging: disabled\nhydra:\n" + PARAMS, "hydra/job_logging"),
    "broken": ("hydra:\n  sweeper: {{params: [\n", "not valid YAML"),
    "not_a_mapping": ("- a\n- b\n", "not a mapping"),
}
COMMANDS = {"sweep": ("sweep", "{name}"), "train -m": ("train", "-m", "sweep={name}"), "tune": ("tune", "{name}")}
# Every file through `sweep`; the most dangerous ones through the other two ways of using a sweep file too.
MATRIX = [(name, "sweep") for name in FILES] + [
    (name, command) for name in ("overwrite", "job_logging", "os_via_package", "broken") for command in ("train -m", "tune")]


@pytest.fixture
def sweeps_dir(tmp_path) -> Path:
    folder = tmp_path / "extra_sweeps"
    folder.mkdir()
    for name, (text, _) in FILES.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text).format(tmp=tmp_path))
    (tmp_path / "victim").mkdir()
    (tmp_path / "victim" / "keep.txt").write_text("precious")
    return folder


@pytest.mark.parametrize("name,command", MATRIX, ids=[f"{c} {n}" for n, c in MATRIX])
def test_a_sweep_file_that_could_touch_anything_is_refused(run_cli, tmp_path, sweeps_dir, name, command):
    db = tmp_path / "m.db"
    args = [a.format(name=name) for a in COMMANDS[command]]
    result = run_cli(*args, "data=synthetic", "trainer.epochs=1", f"tracking.uri=sqlite:///{db}",
                     f"tuner.directory={tmp_path / 'tuner'}", env={"FASHION_LAB_SWEEPS_DIR": str(sweeps_dir)},
                     timeout=120)
    assert_refused(result, FILES[name][1], str(sweeps_dir / f"{name}.yaml"))
    assert not db.exists() and not (tmp_path / "tuner").exists() and not (tmp_path / "outputs").exists()
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "bashrc").exists()
    assert not (tmp_path / "elsewhere").exists()
    assert (tmp_path / "victim" / "keep.txt").read_text() == "precious"


def test_a_broken_sweep_file_stops_only_the_commands_that_use_it(run_cli, tmp_path, sweeps_dir):
    env = {"FASHION_LAB_SWEEPS_DIR": str(sweeps_dir)}
    db = tmp_path / "m.db"
    trained = run_cli("train", "data=synthetic", "trainer.epochs=1", "data.synthetic_train=300",
                      "data.synthetic_test=100", "data.val_samples=60", f"tracking.uri=sqlite:///{db}", env=env)
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr and store_runs(db) == ["FINISHED"]
    listed = run_cli("sweep", "--list", env=env)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    assert "quickstart" in listed.stdout and any(
        line.startswith("broken") and "refused" in line for line in listed.stdout.splitlines())


def test_what_a_sweep_file_needs_is_still_allowed(tmp_path, monkeypatch):
    from fashion_lab.config import REFUSED_SWEEPS, compose, register_configs, sweep_code

    (tmp_path / "parallel.yaml").write_text(textwrap.dedent("""\
        defaults:
          - override /data: small
          - override /hydra/launcher: joblib
        hydra:
          launcher:
            n_jobs: 2
          sweeper:
            params:
              model.conv_dropout: 0.0,0.1
        sweep:
          seeds: 2
        tuner:
          project: mine
        """))
    monkeypatch.setenv("FASHION_LAB_SWEEPS_DIR", str(tmp_path))
    register_configs()
    assert REFUSED_SWEEPS == {}  # every shipped sweep and this one
    cfg = compose(["sweep=parallel"], return_hydra_config=True)
    assert cfg.hydra.launcher.n_jobs == 2 and cfg.tuner.project == "mine"
    assert sweep_code(OmegaConf.create({"x": {"_target_": "fashion_lab.sweeps.campaign.Campaign"}})) is None
    for target in ("fashion_lab.config.os.system", "fashion_lab.search.study.check_resumable", "fashion_lab."):
        assert target in sweep_code(OmegaConf.create({"x": {"_target_": target}}))


def test_hydra_is_pinned_to_versions_that_block_module_attribute_targets():
    import tomllib
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    pin = next(d for d in project["project"]["dependencies"] if d.startswith("hydra-core"))
    allowed = SpecifierSet(pin.removeprefix("hydra-core"))
    assert version("hydra-core") in allowed
    assert "1.3.2" not in allowed and "1.3.7" not in allowed  # older 1.3 releases run fashion_lab.config.os.system


# --- the tuner folder: deleted only if fashion-lab made it --------------------------------------

def _runs(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]


def test_overwrite_never_deletes_the_store_or_a_folder_fashion_lab_did_not_make(run_cli, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    db = shared / "m.db"
    tiny = ["data=synthetic", "trainer.epochs=1", "data.synthetic_train=300", "data.synthetic_test=100",
            "data.val_samples=60", f"tracking.uri=sqlite:///{db}"]
    run_cli("train", *tiny, check=True)
    assert _runs(db) == 1
    (shared / "fashion_lab.json").write_text("{}")  # a planted state file is not enough: no marker
    before = sorted(p.name for p in shared.iterdir())  # the store, its lock and its artifacts
    for command in (("tune", "search"), ("sweep", "search")):
        result = run_cli(*command, *tiny, f"tuner.directory={tmp_path}", "tuner.project=shared",
                         "tuner.overwrite=true")
        assert_refused(result, "tuner.overwrite=true", str(shared))
        assert _runs(db) == 1 and sorted(p.name for p in shared.iterdir()) == before
    (shared / ".made-by-fashion-lab").write_text("{}")
    (tmp_path / "link").symlink_to(shared)  # a marked folder behind a symlink is not ours either
    result = run_cli("tune", "search", *tiny, f"tuner.directory={tmp_path}", "tuner.project=link",
                     "tuner.overwrite=true")
    assert_refused(result, "tuner.overwrite=true", "link")
    assert _runs(db) == 1


def test_overwrite_deletes_a_search_folder_fashion_lab_made(tmp_path):
    from fashion_lab.search import study

    search = study.prepare_command(["bn_placement", "tracking=none", f"tuner.directory={tmp_path}"])
    assert study.check_resumable(search) is False
    study.claim_folder(search)
    study.save_state(search)
    (search.directory / "oracle.json").write_text("{}")
    assert study.check_resumable(search) is True  # the same search resumes
    again = study.prepare_command(["bn_placement", "tracking=none", f"tuner.directory={tmp_path}",
                                   "tuner.overwrite=true"])
    assert study.check_resumable(again) is False and not search.directory.exists()


@pytest.mark.slow  # two real one-trial searches (~40 s)
def test_overwrite_from_the_command_line_restarts_a_search_fashion_lab_made(run_cli, tmp_path):
    from helpers.search import IN_PROCESS, TINY

    args = ["tune", "bn_placement", *TINY, "tuner.max_trials=1", IN_PROCESS, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
            f"tuner.directory={tmp_path / 'tuner'}"]
    run_cli(*args, check=True)
    folder = tmp_path / "tuner" / "bn_placement"
    assert (folder / ".made-by-fashion-lab").is_file() and (folder / "fashion_lab.json").is_file()
    again = run_cli(*args, "tuner.overwrite=true", check=True)
    assert "resuming" not in again.stdout and (folder / ".made-by-fashion-lab").is_file()
