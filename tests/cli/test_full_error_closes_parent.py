"""``HYDRA_FULL_ERROR=1`` makes Hydra raise a crash as it is instead of exiting: the search's parent
run is still closed FAILED, not left RUNNING. A real search, crashed for real: its tuner folder is
replaced by a file while the first trial trains, so saving the tuner's state fails."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import time

import pytest
from conftest import cli_env, fashion_lab


@pytest.mark.slow  # a search's first trial, then the crash
def test_a_search_crashing_under_hydra_full_error_closes_its_parent_failed(tmp_path):
    db, state = tmp_path / "m.db", tmp_path / "state"
    process = subprocess.Popen(
        fashion_lab("tune", "data=synthetic", "data.synthetic_train=300", "trainer.epochs=15", "trainer.verbose=0",
                    "tuner.max_trials=3", f"tuner.directory={state}", f"tracking.uri=sqlite:///{db}"),
        cwd=tmp_path, env=cli_env(HYDRA_FULL_ERROR="1"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(sqlite3.OperationalError):
                with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
                    if connection.execute("SELECT count(*) FROM metrics WHERE key = 'val_accuracy'").fetchone()[0]:
                        break
            time.sleep(0.3)
        shutil.rmtree(state)
        state.write_text("not a folder")
        _, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode != 0
    assert "is not a directory" in stderr  # the crash, shown in full as HYDRA_FULL_ERROR asks
    with contextlib.closing(sqlite3.connect(db)) as connection:
        parents = connection.execute(
            "SELECT r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = 'fashion_lab.role' AND t.value = 'search'").fetchall()
    assert parents == [("FAILED",)]
