"""An upload that dies part-way (kill -9, a machine gone) resumes on the next ``fashion-lab upload``: every call of
the record ends up in the store exactly once, and a run the upload made has all its params."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import FASHION_LAB, cli_env

STEPS = 400  # metric calls: long enough (seconds) for a kill to land in the middle


def spooled(tmp_path: Path, steps: int = STEPS) -> Path:
    """A record as the recorder keeps it: params in run.json, then one metrics call per step, then the end."""
    from fashion_lab.record.offline import Spool
    from fashion_lab.record.spool_checks import SECRET

    spool = Spool(tmp_path / "kept" / ("e" * 32), {"uri": "http://h:1", "experiment": "fashion-lab",
                                                   "run_id": "e" * 32, "run_name": "kept", "tags": {},
                                                   "params": {"trainer.epochs": "3", "model.pooling": "max"},
                                                   SECRET: "f" * 32})
    for step in range(steps):
        spool.keep("metrics", {"metrics": {"loss": 1.0 / (step + 1)}, "step": step, "timestamp": 1000 + step})
    spool.keep("terminate", {"status": "FINISHED", "end_time": 1000 + steps})
    return spool.folder


def only_run(uri: str):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return client, run


def sent_so_far(db: Path) -> int:
    try:
        store = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = store.execute("select value from tags where key = 'fashion_lab.spool_sent'").fetchone()
        finally:
            store.close()
    except sqlite3.Error:  # not created yet, or being written
        return 0
    return int(row[0]) if row and row[0].isdigit() else 0


def assert_complete(uri: str, steps: int = STEPS) -> None:
    client, run = only_run(uri)
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(steps))  # each call once: none lost, none twice
    assert run.data.params == {"trainer.epochs": "3", "model.pooling": "max"}
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_an_upload_killed_part_way_resumes_where_it_stopped(tmp_path):
    record, db = spooled(tmp_path), tmp_path / "store.db"
    command = [FASHION_LAB, "upload", str(record), f"tracking.uri=sqlite:///{db}"]
    upload = subprocess.Popen(command, cwd=tmp_path, env=cli_env(), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while sent_so_far(db) < 20 and upload.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert upload.poll() is None, "the upload ended before it could be killed part-way: give it more calls"
    upload.send_signal(signal.SIGKILL)
    upload.wait()
    cut = sent_so_far(db)
    assert 20 <= cut < STEPS + 1

    again = subprocess.run(command, cwd=tmp_path, env=cli_env(), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "after " in again.stdout and " sent before" in again.stdout, again.stdout
    assert_complete(f"sqlite:///{db}")


def test_fast_an_upload_killed_before_its_new_run_had_params_gives_them_on_resume(cli_in_process, tmp_path):
    """The store as a kill right after the upload made its run leaves it: the run and its proof, no params yet."""
    import mlflow

    from fashion_lab.record.spool_checks import DIGEST_TAG, digest
    from fashion_lab.record.upload import SENT_TAG

    record, uri = spooled(tmp_path, steps=3), f"sqlite:///{tmp_path / 'store.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.create_run(client.create_experiment("fashion-lab"), run_name="kept",
                      tags={DIGEST_TAG: digest("f" * 32), SENT_TAG: "0"})
    result = cli_in_process("upload", str(record), f"tracking.uri={uri}")
    assert result.returncode == 0, result.stderr
    assert_complete(uri, steps=3)
