"""A store that fills up or turns read-only while runs train: each run ends FAILED with the cause,
in the store if it can take it, else in the local spool that ``fashion-lab upload`` sends later;
the terminal shows one line per failure, no traceback.

Real faults: a small tmpfs filled by a real file while a run trains, and the same tmpfs remounted
read-only mid-sweep (needs root for mount; skipped with the reason otherwise).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import cli_env, fashion_lab

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SMALL = ("data=synthetic", "data.synthetic_train=300", "trainer.verbose=0", "tracking.log_weights=false",
         "tracking.log_plots=false")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not IS_ROOT, reason="mounting a small tmpfs needs root")]


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def start(cwd: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(fashion_lab(*args), cwd=cwd, env=cli_env(**(env or {})), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epoch(db: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(sqlite3.OperationalError):  # read-only: polling never writes the store
            with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
                if connection.execute("SELECT count(*) FROM metrics WHERE key = 'val_accuracy'").fetchone()[0]:
                    return
        time.sleep(0.3)
    raise AssertionError(f"no epoch was logged: {process.communicate()}")


def our_lines(stderr: str) -> list[str]:
    """stderr without MLflow's INFO lines and TensorFlow's start-up notices."""
    noise = (" INFO mlflow.", "WARNING: All log messages before absl", "I0000 ", "E0000 ", "W0000 ")
    return [line for line in stderr.splitlines() if line.strip() and not any(n in line for n in noise)]


def runs(db: Path) -> dict[str, tuple[str, str | None]]:
    """run name -> (status, fashion_lab.failure tag)."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        rows = connection.execute(
            "SELECT r.name, r.status, t.value FROM runs r LEFT JOIN tags t "
            "ON t.run_uuid = r.run_uuid AND t.key = 'fashion_lab.failure'").fetchall()
    return {name: (status, failure) for name, status, failure in rows}


def upload(cwd: Path, db: Path) -> subprocess.CompletedProcess:
    """``fashion-lab upload`` into the store the command names (a record never picks its own store)."""
    return subprocess.run(fashion_lab("upload", "fashion-lab-offline", f"tracking.uri=sqlite:///{db}"), cwd=cwd,
                          env=cli_env(),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


def test_a_disk_filled_mid_epoch_records_the_run_failed_with_its_cause(tmp_path):
    full = tmp_path / "full"
    with tmpfs(full, "4m"):
        db = full / "m.db"
        process = start(tmp_path, "train", *SMALL, "trainer.epochs=300", f"tracking.uri=sqlite:///{db}")
        try:
            wait_for_epoch(db, process)
            with open(full / "filler", "wb") as filler, contextlib.suppress(OSError):
                while filler.write(b"\0" * 65536):  # until the disk is full
                    pass
            _, stderr = process.communicate(timeout=180)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 1, stderr
        assert "Traceback" not in stderr
        [line] = our_lines(stderr)
        assert "database or disk is full" in line and "recorded FAILED" in line and "fashion-lab upload" in line
        assert [status for status, _ in runs(db).values()] == ["RUNNING"]  # the store could not take its end
        (full / "filler").unlink()
        uploaded = upload(tmp_path, db)
        assert uploaded.returncode == 0, uploaded.stderr
        [(status, failure)] = runs(db).values()
        assert status == "FAILED" and "database or disk is full" in failure, failure


def test_a_store_turned_read_only_mid_sweep_records_each_run_failed_in_one_line(tmp_path):
    folder = tmp_path / "store"
    with tmpfs(folder, "16m"):
        db = folder / "m.db"
        # NullPool: no connection held open between calls, so the kernel lets the tmpfs go read-only
        # (it refuses while a file on it is open for writing).
        process = start(tmp_path, "sweep", "bn_placement", *SMALL, "trainer.epochs=300",
                        f"tracking.uri=sqlite:///{db}", env={"MLFLOW_SQLALCHEMYSTORE_POOLCLASS": "NullPool"})
        try:
            wait_for_epoch(db, process)
            for _ in range(100):  # a write in flight holds the file open for a moment
                if subprocess.run(["mount", "-o", "remount,ro", str(folder)], capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise AssertionError("the store's tmpfs could not be remounted read-only")
            stdout, stderr = process.communicate(timeout=240)
            subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 1, stderr
        assert "Traceback" not in stderr + stdout
        failed = [line for line in our_lines(stderr) if " FAILED: " in line]
        assert len(failed) == 3, stderr  # one line per point
        assert all("attempt to write a readonly database" in line for line in failed), failed
        assert "recorded FAILED with this reason in" in failed[0]
        assert all("no run was created" in line for line in failed[1:])
        assert sorted(status for status, _ in runs(db).values()) == ["RUNNING", "RUNNING"]  # parent and point 1
        uploaded = upload(tmp_path, db)
        assert uploaded.returncode == 0, uploaded.stderr
        recorded = runs(db)
        assert recorded["bn_placement=after"][0] == "FAILED"
        assert "readonly database" in recorded["bn_placement=after"][1]
        assert recorded["bn_placement"][0] == "FAILED"  # the parent: its end came from the spool too
