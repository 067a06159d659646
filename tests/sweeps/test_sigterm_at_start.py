"""SIGTERM while a sweep or search is still starting (its parent just made, its lease settling) closes that
parent KILLED, as SIGTERM later does: it was left RUNNING, or closed FAILED as a crash."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time

import pytest

from conftest import FASHION_LAB, cli_env

TINY = ["data=synthetic", "data.synthetic_train=300", "data.synthetic_test=100", "data.val_samples=100",
        "trainer.epochs=1", "trainer.verbose=0"]


def parents(db) -> list[tuple[str, str]]:
    """(status, failure tag) of the store's sweep and search parents; [] while the store is being made."""
    try:
        store = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return store.execute(
                "select r.status, coalesce(f.value, '') from runs r join tags t on t.run_uuid = r.run_uuid and "
                "t.key = 'fashion_lab.role' and t.value in ('sweep', 'search') left join tags f on "
                "f.run_uuid = r.run_uuid and f.key = 'fashion_lab.failure'").fetchall()
        finally:
            store.close()
    except sqlite3.Error:
        return []


@pytest.mark.slow
@pytest.mark.parametrize("command", [["tune", "search", "tuner=tpe", "tuner.max_trials=3"],
                                     ["train", "-m", "model.pooling=max,avg"]], ids=["search", "grid"])
def test_sigterm_while_the_parent_is_new_closes_it_killed(tmp_path, command):
    db = tmp_path / "mlflow.db"
    process = subprocess.Popen([FASHION_LAB, *command, *TINY], cwd=tmp_path, env=cli_env(), stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not parents(db) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert parents(db) == [("RUNNING", "")], "the parent was not caught while the command started"
    time.sleep(0.5)  # its record written, its lease settling (2 s): no point has started
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert parents(db) == [("KILLED", "terminated (SIGTERM)")], err
    assert "Traceback" not in err
