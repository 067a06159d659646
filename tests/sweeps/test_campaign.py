"""The campaign layer, for real: parallel trials on joblib, grid sweeps that resume after SIGKILL, and
Ctrl-C / SIGTERM that leave the parent and the in-flight children KILLED and no worker alive."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FASHION_LAB, as_from_a_terminal, cli_env, compose

from fashion_lab.sweeps import job
from fashion_lab.record import tracking
from fashion_lab.runtime import signals

TINY = ["data=synthetic", "trainer.epochs=1", "trainer.verbose=0", "data.synthetic_train=300",
        "data.synthetic_test=100", "data.val_samples=60", "model.filters=[8,16]", "model.dense_units=32"]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def runs(store: str) -> list[dict]:
    """Every run with status, times and tags, read straight from the sqlite store ([] before it exists)."""
    path = store[len("sqlite:///"):]
    if not Path(path).exists():
        return []
    db = sqlite3.connect(path)
    try:
        rows = db.execute("select run_uuid, name, status, start_time, end_time from runs").fetchall()
        tags = db.execute("select run_uuid, key, value from tags").fetchall()
    except sqlite3.OperationalError:  # the store is still being created
        return []
    finally:
        db.close()
    out = {r: {"id": r, "name": n, "status": s, "start": a, "end": b, "tags": {}} for r, n, s, a, b in rows}
    for r, k, v in tags:
        out[r]["tags"][k] = v
    return list(out.values())


def parents(store: str) -> list[dict]:
    return [r for r in runs(store) if "mlflow.parentRunId" not in r["tags"]]


def children(store: str) -> list[dict]:
    return [r for r in runs(store) if "mlflow.parentRunId" in r["tags"]]


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([FASHION_LAB, *args], cwd=cwd, env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            preexec_fn=as_from_a_terminal)


def wait_for(condition, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def descendants(pid: int) -> list[int]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            tree.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
        except OSError:
            pass
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# --- KerasTuner trials in parallel on joblib ------------------------------------------------------

@pytest.mark.slow  # four trials on two workers, twice (~2 min on 2 cores)
def test_parallel_trials_on_joblib_record_one_search_and_resume_to_nothing(run_cli, store):
    # A new process per trial (tuner.trials_per_worker=1), so each trial's own process is visible;
    # warm workers, which serve several trials each, have their own tests (test_warm_worker.py).
    args = ["tune", *TINY, "tuner=random", "tuner.max_trials=4", "tuner.parallel_trials=2", *JOBLIB,
            "tuner.trials_per_worker=1", f"tracking.uri={store}"]
    run_cli(*args, check=True, timeout=600)
    (parent,) = parents(store)
    trials = children(store)
    assert len(trials) == 4 and {t["status"] for t in trials} == {"FINISHED"}
    assert {t["tags"]["mlflow.parentRunId"] for t in trials} == {parent["id"]}
    assert sorted(t["tags"]["fashion_lab.trial_id"] for t in trials) == ["0", "1", "2", "3"]
    owners = {t["tags"]["fashion_lab.owner"].split(":")[0] for t in trials}
    assert len(owners) == 4  # each trial trained in a fresh process
    overlapping = [(a, b) for a in trials for b in trials if a["id"] < b["id"]
                   and a["start"] < b["end"] and b["start"] < a["end"]
                   and a["tags"]["fashion_lab.owner"] != b["tags"]["fashion_lab.owner"]]
    assert overlapping, [(t["start"], t["end"]) for t in trials]  # two trials at the same time
    again = run_cli(*args, check=True, timeout=600)
    assert len(children(store)) == 4 and len(parents(store)) == 1 and "resuming" in again.stdout


# --- grid sweeps resume ------------------------------------------------------------------------

GRID = ["train", "-m", *TINY, "model.bn_placement=after,before,none"]


@pytest.mark.slow  # three grid commands (~1 min)
def test_grid_sweep_killed_after_its_first_point_resumes_without_duplicates(run_cli, store, tmp_path):
    args = [*GRID, f"tracking.uri={store}"]
    proc = start(args, tmp_path)
    try:
        wait_for(lambda: any(c["status"] == "FINISHED" for c in children(store)), "the first point")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    first = children(store)
    result = run_cli(*args, check=True)
    assert "resuming" in result.stdout and "already recorded" in result.stdout
    (parent,) = parents(store)
    assert parent["status"] == "FINISHED" and "fashion_lab.failure" not in parent["tags"]
    points = children(store)
    finished = sorted(c["name"] for c in points if c["status"] == "FINISHED")
    assert finished == ["bn_placement=after", "bn_placement=before", "bn_placement=none"]  # each exactly once
    assert not [r for r in runs(store) if r["status"] == "RUNNING"]
    for c in first:  # what was finished stays, what was cut off is KILLED
        assert next(p for p in points if p["id"] == c["id"])["status"] == ("FINISHED" if c["status"] == "FINISHED"
                                                                           else "KILLED")
    assert len(points) == 3 + sum(c["status"] != "FINISHED" for c in first)

    run_cli(*args, check=True)  # the same command again: nothing to do
    assert len(children(store)) == len(points) and len(parents(store)) == 1
    run_cli(*args, "sweep.restart=true", check=True)  # a new sweep under a new parent
    assert len(parents(store)) == 2 and len(children(store)) == len(points) + 3


# --- Ctrl-C and SIGTERM ------------------------------------------------------------------------

LONG = ["train", "-m", "data=synthetic", "trainer.verbose=0", "trainer.epochs=200", "data.synthetic_train=300",
        "data.synthetic_test=100", "data.val_samples=60", "model.filters=[8]", "model.dense_units=16",
        "model.bn_placement=after,before,none"]


@pytest.mark.parametrize("library", ["rewraps", "swallows"])
def test_a_signal_a_library_caught_still_stops_the_sweep(monkeypatch, library):
    """A point whose training library caught our SIGTERM (TensorFlow turns it into a TypeError while
    tracing) must not be recorded as an ordinary failure with the sweep going on to its next point."""
    def training_that_catches_the_signal(**job):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        except BaseException:
            if library == "rewraps":
                raise TypeError("Failed to convert elements of (None, 1568) to Tensor") from None
        return {"run_id": None, "metrics": {}, "objectives": {}}

    monkeypatch.setattr(job, "_train", training_that_catches_the_signal)
    monkeypatch.setattr(signals, "_SIGNALLED", [])  # signals reads it
    restore = tracking.install_signal_handlers()  # what a sweep does when it starts
    try:
        with pytest.raises(tracking.Terminated):
            job.run_job(compose(["data=synthetic", "tracking=none"]))
    finally:
        restore()
    assert tracking.take_signal() is None  # acted on once


@pytest.mark.slow  # one interrupted sweep per case (~30 s each)
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_sweep_closes_everything_killed_and_stops_its_workers(store, tmp_path, launcher, signum):
    args = [*LONG, *(JOBLIB if launcher == "joblib" else []), f"tracking.uri={store}"]
    in_flight = 2 if launcher == "joblib" else 1
    proc = start(args, tmp_path)
    try:
        wait_for(lambda: sum(c["status"] == "RUNNING" for c in children(store)) >= in_flight, "running points")
        time.sleep(1)  # into the first epochs
        pids = {int(c["tags"]["fashion_lab.owner"].split(":")[0]) for c in children(store)} | set(
            descendants(proc.pid))
        running = [c["id"] for c in children(store) if c["status"] == "RUNNING"]
        os.kill(proc.pid, signum)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), stderr[-3000:]
    (parent,) = parents(store)
    assert parent["status"] == "KILLED" and "fashion_lab.failure" in parent["tags"]
    status = {c["id"]: c["status"] for c in children(store)}
    assert all(status[c] == "KILLED" for c in running), status
    assert not [r for r in runs(store) if r["status"] == "RUNNING"]
    time.sleep(1)
    assert not [pid for pid in pids if alive(pid)], "worker processes outlived the sweep"


@pytest.mark.slow  # an interrupted parallel search, then its resume (~2 min)
def test_sigterm_on_a_parallel_search_then_the_same_command_finishes_it(run_cli, store, tmp_path):
    args = ["tune", *TINY, "trainer.epochs=30", "tuner.max_trials=3", "tuner.parallel_trials=2", *JOBLIB,
            f"tracking.uri={store}"]
    proc = start(args, tmp_path)
    try:
        wait_for(lambda: sum(c["status"] == "RUNNING" for c in children(store)) >= 2, "two running trials")
        pids = {int(c["tags"]["fashion_lab.owner"].split(":")[0]) for c in children(store)} | set(
            descendants(proc.pid))
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr[-3000:]
    assert parents(store)[0]["status"] == "KILLED"
    assert {c["status"] for c in children(store)} == {"KILLED"}
    time.sleep(1)
    assert not [pid for pid in pids if alive(pid)], "worker processes outlived the search"
    again = run_cli(*args, check=True, timeout=900)  # the same command: the killed trials run again
    assert "resuming" in again.stdout and len(parents(store)) == 1
    finished = [c for c in children(store) if c["status"] == "FINISHED"]
    assert sorted(c["tags"]["fashion_lab.trial_id"] for c in finished) == ["0", "1", "2"]
    assert parents(store)[0]["status"] == "FINISHED"


def test_a_job_hands_back_a_typed_result_that_pickles():
    """Every launcher pickles a job's result back to its sweeper: a JobResult, FAILED with the reason."""
    import pickle

    result = job.run_job(compose(["data=synthetic", "tracking=none", "model.dense_units=0"]))
    assert isinstance(result, job.JobResult) and result.status == "FAILED" and result.run_id is None
    assert result.reason.startswith("ConfigError: model.dense_units=0 is not allowed")
    back = pickle.loads(pickle.dumps(result))
    assert (back.status, back.reason, back.overrides, back.rss_mb) == (result.status, result.reason, [], result.rss_mb)
    lost = job.JobResult.lost("CancelledError: the job was cancelled")
    assert (lost.status, lost.metrics, lost.objectives) == ("LOST", {}, {})
