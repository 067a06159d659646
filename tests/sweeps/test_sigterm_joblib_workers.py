"""SIGTERM to a sweep on the joblib launcher: each worker closes its own run KILLED (no run left for the
reaper, "ended without closing the run"), well within the grace period, with no loky traceback after
the message. Real processes, a real signal."""

from __future__ import annotations

import contextlib
import sqlite3
import signal
import subprocess
import time

import pytest
from conftest import cli_env, fashion_lab


def runs_training(db) -> int:
    with contextlib.suppress(sqlite3.OperationalError):
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
            return connection.execute(
                "SELECT count(DISTINCT run_uuid) FROM metrics WHERE key = 'val_accuracy'").fetchone()[0]
    return 0


@pytest.mark.slow  # two workers train until each has logged an epoch
def test_sigterm_lets_each_joblib_worker_close_its_own_run(tmp_path):
    db = tmp_path / "m.db"
    process = subprocess.Popen(
        fashion_lab("sweep", "bn_placement", "data=synthetic", "data.synthetic_train=300", "trainer.epochs=300",
                    "trainer.verbose=0", "tracking.log_weights=false", "tracking.log_plots=false",
                    f"tracking.uri=sqlite:///{db}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"),
        cwd=tmp_path, env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while runs_training(db) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.3)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr and "resource_tracker" not in stderr, stderr
    message = "fashion-lab: terminated; runs recorded as KILLED"
    assert message in stderr and not stderr[stderr.index(message):].strip().count("\n"), stderr  # nothing after it
    assert took < 20, took  # the workers closed their runs; none waited for the grace period's kill
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute("SELECT r.name, r.status, t.value FROM runs r LEFT JOIN tags t ON "
                                  "t.run_uuid = r.run_uuid AND t.key = 'fashion_lab.failure'").fetchall()
    children = [row for row in rows if row[0] != "bn_placement"]
    assert len(children) == 2 and all(status == "KILLED" for _, status, _ in rows), rows
    assert all("ended without closing the run" not in (reason or "") for _, _, reason in children), rows
