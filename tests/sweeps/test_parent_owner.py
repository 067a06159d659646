"""One command owns a sweep at a time (fashion_lab/record/lease.py): real concurrent commands on one
sqlite store, a real start race, and a stale lease (dead pid, old heartbeat) taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import REPO, as_from_a_terminal, cli_env, compose, fashion_lab

TINY = ["data=synthetic", "trainer.epochs=1", "trainer.verbose=0", "data.synthetic_train=300",
        "data.synthetic_test=100", "data.val_samples=60", "model.filters=[8,16]", "model.dense_units=32"]
POINTS = ["bn_placement=after", "bn_placement=none"]
GRID = ["train", "-m", *TINY, "model.bn_placement=after,none"]
HOST = socket.gethostname()


def runs(store: str) -> list[dict]:
    """Every run (deleted ones too) with status, stage and tags, read straight from the sqlite store."""
    path = store[len("sqlite:///"):]
    if not Path(path).exists():  # connecting would create an empty file where the store should be
        return []
    db = sqlite3.connect(path)
    try:
        rows = db.execute("select run_uuid, name, status, lifecycle_stage from runs").fetchall()
        tags = db.execute("select run_uuid, key, value from tags").fetchall()
    except sqlite3.OperationalError:  # tables not there yet
        return []
    finally:
        db.close()
    out = {r: {"id": r, "name": n, "status": s, "stage": g, "tags": {}} for r, n, s, g in rows}
    for r, k, v in tags:
        out[r]["tags"][k] = v
    return list(out.values())


def parents(store: str, stage: str = "active") -> list[dict]:
    return [r for r in runs(store) if "mlflow.parentRunId" not in r["tags"] and r["stage"] == stage]


def points(store: str) -> list[dict]:
    return [r for r in runs(store) if "mlflow.parentRunId" in r["tags"]]


def leases(run: dict) -> dict[str, dict]:
    return {k: json.loads(v) for k, v in run["tags"].items() if k.startswith("fashion_lab.lease.")}


def made_store(store: str) -> str:
    """The store created up front, so a command's stderr holds only its own lines."""
    from fashion_lab.record import tracking

    tracking.client_for(compose([f"tracking.uri={store}"]).tracking)
    return store


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    """A command in the background; its output goes to files (a full pipe would stall it), read by ``output``."""
    n = len(list(cwd.glob("*.err")))
    with open(cwd / f"{n}.out", "w") as out, open(cwd / f"{n}.err", "w") as err:
        proc = subprocess.Popen(fashion_lab(*args), cwd=cwd, env=cli_env(), stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, text=True, preexec_fn=as_from_a_terminal)
    proc.files = (cwd / f"{n}.out", cwd / f"{n}.err")
    return proc


def output(proc: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    proc.wait(timeout=timeout)
    return proc.files[0].read_text(), proc.files[1].read_text()


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def each_point_trained_once(store: str) -> None:
    (parent,) = parents(store)
    children = points(store)
    assert sorted(c["name"] for c in children) == POINTS, [(c["name"], c["status"]) for c in children]
    assert {c["status"] for c in children} == {"FINISHED"} and parent["status"] == "FINISHED"
    assert {c["tags"]["mlflow.parentRunId"] for c in children} == {parent["id"]}
    assert not leases(parent)  # released at the end


def refused_naming(result_stderr: str, pid: int | str, host: str = HOST) -> None:
    lines = [line for line in result_stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("fashion-lab: error: sweep multirun is already running: owned by "
                               f"host {host}, pid {pid}, since "), lines[0]
    assert "last heartbeat" in lines[0] and "trains nothing" in lines[0]


# --- the lease's rules ---------------------------------------------------------------------------

def test_a_lease_is_stale_when_its_process_here_ended_or_its_heartbeat_is_old():
    from fashion_lab.record.lease import GRACE_S, Lease

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    mine = Lease.mine()
    assert mine.stale(now) is None
    gone = Lease("t1", HOST, f"{dead.pid}:0", now, now)
    assert gone.stale(now) == "its process has ended"
    away = Lease("t2", "another-host", "1:1", now - 3600, now - 5)
    assert away.stale(now) is None  # another host's pid cannot be checked: its heartbeat decides
    away.heartbeat = now - GRACE_S - 1
    assert away.stale(now).startswith("no heartbeat for ")


@pytest.mark.slow  # a new store and two parents (~10 s on 2 busy cores)
def test_the_heartbeat_refreshes_the_lease_until_it_is_released_or_taken_over(store, monkeypatch, capfd):
    from fashion_lab.record import lease, tracking

    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(lease, "SETTLE_S", 0.1)
    cfg = compose(["data=synthetic", f"tracking.uri={store}"]).tracking
    open_run = lambda claim: tracking.open_parent_run(cfg, name="n", role="sweep", strategy="grid",  # noqa: E731
                                                      sweep_name="n", swept_keys=[], definition="", tags=claim)
    parent, resumed, taken = tracking.hold_parent(cfg, "k1", "sweep n", False, open_run)
    assert not resumed and taken == []
    (held,) = leases(parents(store)[0]).values()
    assert held["state"] == "held" and held["host"] == HOST and held["owner"].startswith(f"{os.getpid()}:")
    wait_for(lambda: next(iter(leases(parents(store)[0]).values()))["heartbeat"] > held["heartbeat"],
             "a heartbeat", timeout=10)
    with pytest.raises(tracking.Busy, match=f"owned by host {HOST}, pid {os.getpid()}, since .*parent run {parent}"):
        tracking.hold_parent(cfg, "k1", "sweep n", False, open_run)  # held, even by this very process
    tracking.close_parent_run(cfg, parent, status="FINISHED", summary={})
    assert leases(parents(store)[0]) == {}

    other, _, _ = tracking.hold_parent(cfg, "k2", "sweep m", False, open_run)
    client = tracking.client_for(cfg)
    client.delete_tag(other, next(k for k in client.get_run(other).data.tags if k.startswith("fashion_lab.lease.")))
    wait_for(lambda: "was taken over" in capfd.readouterr().err, "the heartbeat to notice", timeout=10)


# --- a real start race: two processes open the same sweep at the same moment ---------------------------

RACER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from fashion_lab.config import compose
    from fashion_lab.sweeps import campaign
    cfg = compose(["data=synthetic", "tracking.uri={store}"])
    open(f"ready-{{os.getpid()}}", "w").close()
    while not os.path.exists("go"):  # both at once, once both have imported everything
        time.sleep(0.005)
    try:
        parent = campaign.open_parent(cfg.tracking, key="race", restart=False, name="race", role="sweep",
                                      strategy="grid", sweep_name="race", swept_keys=[], definition="", tags={{}})
    except campaign.Stop as stop:
        print("LOST", stop.error, flush=True)
        open("lost", "w").close()
        sys.exit(0)
    print("WON", parent, flush=True)
    for _ in range(6000):  # alive while the loser decides: a dead owner's lease is no lease
        if os.path.exists("lost"):
            break
        time.sleep(0.01)
    campaign.close_parent(cfg.tracking, parent, "FINISHED", {{}})
""")


@pytest.mark.slow  # two fresh interpreters import MLflow and Hydra (~15 s on 2 busy cores; a server: +20 s)
@pytest.mark.parametrize("backend", ["sqlite", "server"])
def test_two_commands_opening_one_sweep_at_once_leave_one_parent(store, tmp_path, backend):
    """The lease works through the MLflow API alone: the same race on a sqlite file and through a server."""
    if backend == "sqlite":
        race(made_store(store), store, tmp_path)
        return
    from helpers.servers import mlflow_server

    with mlflow_server() as server:
        race(server.url, server.backend_uri, tmp_path)


def race(uri: str, store: str, tmp_path: Path) -> None:
    script = RACER.format(repo=str(REPO), store=uri)
    racers = [subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=cli_env(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 2 or any(r.poll() is not None for r in racers),
             "both racers", timeout=120)
    (tmp_path / "go").touch()
    outs = [(r.pid, *r.communicate(timeout=120)) for r in racers]
    assert [r.returncode for r in racers] == [0, 0], outs
    said = [(pid, line) for pid, out, _ in outs for line in out.splitlines()  # MLflow adds "View run" lines
            if line.startswith(("WON", "LOST"))]
    won = [(pid, line.split()[1]) for pid, line in said if line.startswith("WON")]
    lost = [line for _, line in said if line.startswith("LOST")]
    assert len(won) == 1 and len(lost) == 1, outs
    (winner_pid, parent), = won
    assert f"owned by host {HOST}, pid {winner_pid}, since " in lost[0] and f"parent run {parent}" in lost[0]
    (kept,) = parents(store)
    assert kept["id"] == parent and kept["status"] == "FINISHED" and not leases(kept)
    for gone in parents(store, stage="deleted"):  # the loser's own parent, if it made one before it saw
        assert gone["status"] == "KILLED" and gone["tags"]["fashion_lab.failure"] == f"lost the start to parent run {parent}"
    print(f"the loser made its own parent first: {bool(parents(store, stage='deleted'))}")


# --- real commands ------------------------------------------------------------------------------------

@pytest.mark.slow  # two real sweep commands, one trains two tiny points (~40 s on 2 busy cores)
def test_the_same_sweep_started_twice_at_once_trains_each_point_once(store, tmp_path):
    made_store(store)
    args = [*GRID, f"tracking.uri={store}"]
    procs = [start(args, tmp_path), start(args, tmp_path)]
    outs = [output(p) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 75], [(p.returncode, err[-2000:]) for p, (_, err) in zip(procs, outs)]
    winner, loser = (0, 1) if procs[0].returncode == 0 else (1, 0)
    refused_naming(outs[loser][1], procs[winner].pid)
    each_point_trained_once(store)
    assert not parents(store, stage="deleted") or all(p["status"] == "KILLED" for p in parents(store, "deleted"))


@pytest.mark.slow  # a running sweep, a second command against it (~40 s)
def test_a_second_command_while_the_sweep_trains_exits_naming_its_owner(run_cli, store, tmp_path):
    made_store(store)
    args = [*GRID, f"tracking.uri={store}"]
    first = start(args, tmp_path)
    try:
        wait_for(lambda: any(c["status"] == "RUNNING" for c in points(store)), "a point in flight")
        second = run_cli(*args, timeout=300)
        assert second.returncode == 75, second.stderr
        refused_naming(second.stderr, first.pid)
        assert f"parent run {parents(store)[0]['id']})" in second.stderr
        _, err = output(first)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-3000:]
    each_point_trained_once(store)  # the in-flight point was not trained again


@pytest.mark.slow  # a killed sweep, a refused command, a resumed one (~60 s)
def test_a_stale_lease_is_taken_over_and_the_sweep_resumes(run_cli, store, tmp_path):
    from fashion_lab.record import tracking

    args = [*GRID, f"tracking.uri={made_store(store)}"]
    first = start(args, tmp_path)
    try:
        wait_for(lambda: any(c["status"] == "FINISHED" for c in points(store)), "the first point")
    finally:
        os.kill(first.pid, signal.SIGKILL)  # its lease stays behind: this host, a dead pid
        first.wait()
    (parent,) = parents(store)
    (dead_key, dead), = leases(parent).items()
    client = tracking.client(store)
    away = {**dead, "host": "gpu-node-7", "owner": "4242:1", "heartbeat": time.time()}
    client.set_tag(parent["id"], "fashion_lab.lease.elsewhere", json.dumps(away))  # a live owner on another host

    before = points(store)
    refused = run_cli(*args)
    assert refused.returncode == 75, refused.stderr
    refused_naming(refused.stderr, 4242, host="gpu-node-7")
    assert points(store) == before and leases(parents(store)[0]).keys() == {dead_key, "fashion_lab.lease.elsewhere"}

    away["heartbeat"] = time.time() - 3600  # its heartbeat stopped an hour ago
    client.set_tag(parent["id"], "fashion_lab.lease.elsewhere", json.dumps(away))
    resumed = run_cli(*args, check=True)
    taken = [line for line in resumed.stdout.splitlines() if line.startswith("taking over sweep multirun")]
    assert len(taken) == 2, resumed.stdout
    assert any(f"pid {first.pid}," in line and "its process has ended" in line for line in taken)
    assert any("host gpu-node-7, pid 4242," in line and "no heartbeat for 36" in line for line in taken)
    assert "resuming" in resumed.stdout and "already recorded" in resumed.stdout
    (again,) = parents(store)
    assert again["id"] == parent["id"] and again["status"] == "FINISHED" and not leases(again)
    finished = sorted(c["name"] for c in points(store) if c["status"] == "FINISHED")
    assert finished == POINTS  # each exactly once; the point cut off by the kill stays KILLED


def test_a_campaign_key_with_a_quote_finds_its_parent_again(store, monkeypatch):
    """A search's key is its folder's path: a folder named with a quote broke MLflow's filter (a traceback at the
    second command), since the filter has no escape for it."""
    from fashion_lab.record import lease, tracking

    monkeypatch.setattr(lease, "SETTLE_S", 0.0)
    cfg = compose(["data=synthetic", f"tracking.uri={store}"]).tracking
    open_run = lambda claim: tracking.open_parent_run(cfg, name="n", role="search", strategy="random",  # noqa: E731
                                                      sweep_name="n", swept_keys=[], definition="", tags=claim)
    key = "search:/tmp/it's a folder"
    parent, resumed, _ = tracking.hold_parent(cfg, key, "search n", False, open_run)
    tracking.close_parent_run(cfg, parent, status="KILLED", summary={})
    assert tracking.find_parent(cfg, key).run_id == parent
    again, resumed, _ = tracking.hold_parent(cfg, key, "search n", False, open_run)
    assert (again, resumed) == (parent, True)
    tracking.close_parent_run(cfg, again, status="FINISHED", summary={})
    assert tracking.find_parent(cfg, "search:/tmp/plain").__class__ is type(None)  # other keys stay apart
    assert tracking.find_parent(cfg, key) is not None
