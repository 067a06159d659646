"""``fashion-lab upload`` trusts nothing in a record folder (a spool is data, like a colleague's sweep file).

One real record is made once per module (slow tests): a tiny synthetic ``fashion-lab train`` against a real
``mlflow server`` behind a proxy that goes down (HTTP 503) right after the first epoch's metrics, so
the record continues a run its store holds. Each test uploads a copy, tampered where it says, with
the installed ``fashion-lab upload`` into real sqlite stores. A fast test checks a record the
``Spool`` class writes, through the CLI in process.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import FASHION_LAB, cli_env
from helpers.servers import LOOPBACK, mlflow_server

SLOW = pytest.mark.slow  # one server and one training for the module, then a command per check

PASSWORD = "pw-in-the-uri-7f3a"
TINY = ["data=synthetic", "trainer.verbose=0", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "tracking.log_plots=false", "trainer.epochs=3", "tracking.run_name=kept"]


class Outage(ThreadingHTTPServer):
    """Forwards every request to a real MLflow server until the first epoch's metrics went through;
    then answers 503 to everything, as a server going away does."""

    daemon_threads = True

    def __init__(self, target_port: int):
        self.target_port, self.down = target_port, False
        super().__init__((LOOPBACK, 0), _Forward)

    @property
    def url(self) -> str:
        return f"http://someone:{PASSWORD}@{LOOPBACK}:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.server.down:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        target = http.client.HTTPConnection(LOOPBACK, self.server.target_port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "authorization")}
        target.request(self.command, self.path, body=body or None, headers=headers)
        answer = target.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        if self.path.endswith("/runs/log-batch") and json.loads(body or b"{}").get("metrics"):
            self.server.down = True  # epoch 0 is in the store; the rest is kept on disk

    do_GET = do_POST = do_PATCH = do_DELETE = _forward


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """(the server holding the run, the pristine record folder, its run id)."""
    work = tmp_path_factory.mktemp("recording")
    with mlflow_server() as server:
        proxy = Outage(server.port)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        try:
            result = subprocess.run([FASHION_LAB, "train", *TINY, f"tracking.uri={proxy.url}",
                                     f"tracking.offline_dir={work / 'kept'}"], cwd=work, env=cli_env(),
                                    capture_output=True, text=True, timeout=300)
        finally:
            proxy.shutdown()
        assert result.returncode == 0, result.stderr
        assert proxy.down, result.stderr
        (folder,) = (work / "kept").iterdir()
        yield server, folder, folder.name


@pytest.fixture
def record(recorded, tmp_path) -> Path:
    """A fresh copy of the real record, to tamper with."""
    return Path(shutil.copytree(recorded[1], tmp_path / "kept" / recorded[2], symlinks=True))


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def _runs(uri):
    client = _client(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _calls(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]


def _write_calls(folder: Path, calls: list[dict]) -> None:
    (folder / "calls.jsonl").write_text("".join(json.dumps(c) + "\n" for c in calls))


def _victim(uri: str) -> str:
    """Someone else's finished run in ``uri``."""
    client = _client(uri)
    run = client.create_run(client.create_experiment("fashion-lab"), run_name="victim", tags={"owner": "them"})
    client.log_metric(run.info.run_id, "val_accuracy", 0.9)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def _refused(result, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert line.count("\n") == 0 and "Traceback" not in line, result.stderr
    for word in words:
        assert word in line, line


# --- the record as recorded ---------------------------------------------------------------------

@SLOW
def test_the_record_keeps_no_password_and_continues_its_run(recorded):
    _, folder, run_id = recorded
    identity = json.loads((folder / "run.json").read_text())
    assert identity["run_id"] == run_id and identity["not_kept"] >= 1  # epoch 0 reached the store
    for name in ("run.json", "calls.jsonl"):
        assert PASSWORD not in (folder / name).read_text(), name
    assert "someone:" not in identity["uri"] and "***@" in identity["uri"]


# --- the store is the command's -----------------------------------------------------------------

@SLOW
def test_upload_goes_to_the_store_the_command_names_never_run_json_s(record, run_cli, tmp_path):
    victim = f"sqlite:///{tmp_path / 'victim.db'}"
    victim_id = _victim(victim)
    identity = json.loads((record / "run.json").read_text())
    (record / "run.json").write_text(json.dumps({**identity, "uri": victim}))
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("upload", str(record), cwd=work, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [r.info.run_id for r in _runs(victim)] == [victim_id]  # run.json's store: untouched
    assert f"to sqlite:///{work / 'mlflow.db'} -> run " in result.stdout, result.stdout
    (run,) = _runs(f"sqlite:///{work / 'mlflow.db'}")
    assert run.info.run_name == "kept" and run.data.params["trainer.epochs"] == "3"


# --- artifacts only from inside the record ------------------------------------------------------

def _secret_folder(tmp_path: Path) -> Path:
    secret = tmp_path / "private"
    secret.mkdir()
    (secret / "id_rsa").write_text("PRIVATE KEY")
    return secret


@SLOW
@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlinked file", "symlinked folder"])
def test_artifacts_are_sent_only_from_inside_the_record(record, run_cli, tmp_path, how):
    secret = _secret_folder(tmp_path)
    calls = _calls(record)
    number, call = next((n, c) for n, c in enumerate(calls, 1) if c["op"] == "artifacts")
    kept = record / call["kwargs"]["directory"]
    if how == "absolute":
        call["kwargs"]["directory"] = str(secret)
    elif how == "dotdot":
        call["kwargs"]["directory"] = "../../private"
    elif how == "symlinked file":
        (kept / "notes.txt").symlink_to(secret / "id_rsa")
    else:
        shutil.rmtree(kept)
        kept.symlink_to(secret)
    _write_calls(record, calls)
    store = tmp_path / "b.db"
    result = run_cli("upload", str(record), f"tracking.uri=sqlite:///{store}", timeout=120)
    named = str(kept / "notes.txt") if how == "symlinked file" else f"calls.jsonl line {number}"
    _refused(result, named, "inside the record")
    assert not store.exists() or not _runs(f"sqlite:///{store}")  # nothing sent, not even the run
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and "mlartifacts" in p.parts]


# --- the run it made, never another -------------------------------------------------------------

@SLOW
def test_a_record_never_touches_a_run_it_did_not_make(record, run_cli, tmp_path):
    uri = f"sqlite:///{tmp_path / 'b.db'}"
    victim_id = _victim(uri)
    before = _client(uri).get_run(victim_id)
    identity = json.loads((record / "run.json").read_text())
    (record / "run.json").write_text(json.dumps({**identity, "run_id": victim_id}))
    result = run_cli("upload", str(record), f"tracking.uri={uri}", timeout=120)
    _refused(result, f"names run {victim_id}", "did not make", "nothing sent")
    after = _client(uri).get_run(victim_id)
    assert (after.info.status, after.info.run_name, after.data.metrics, after.data.tags) == \
           (before.info.status, before.info.run_name, before.data.metrics, before.data.tags)
    assert len(_runs(uri)) == 1


@SLOW
@pytest.mark.parametrize("tamper, named", [
    ({"op": "delete_run", "kwargs": {"run_id": "x"}}, "operation 'delete_run' is not allowed"),
    ({"op": "tags", "kwargs": {"tags": {"mlflow.parentRunId": "0" * 32}}}, "tags argument tags="),
    ({"op": "terminate", "kwargs": {"status": "RUNNING"}}, "terminate argument status='RUNNING'"),
])
def test_calls_outside_the_allow_list_are_refused(record, run_cli, tmp_path, tamper, named):
    calls = _calls(record)
    _write_calls(record, [*calls, tamper])
    store = tmp_path / "b.db"
    result = run_cli("upload", str(record), f"tracking.uri=sqlite:///{store}", timeout=120)
    _refused(result, f"calls.jsonl line {len(calls) + 1}", named)
    assert not store.exists() or not _runs(f"sqlite:///{store}")


# --- what it did, said exactly ------------------------------------------------------------------

@SLOW
def test_twice_and_into_another_store_says_what_it_did(record, recorded, run_cli, tmp_path):
    b, c = f"sqlite:///{tmp_path / 'b.db'}", f"sqlite:///{tmp_path / 'c.db'}"
    first = run_cli("upload", str(record), f"tracking.uri={b}", timeout=120)
    assert first.returncode == 0, first.stderr
    (run,) = _runs(b)
    new_id = run.info.run_id
    assert new_id != recorded[2] and f"to {b} -> run {new_id} (a new run;" in first.stdout
    assert "the record is partial" in first.stdout and f"continues run {recorded[2]}" in first.stdout
    assert [m.step for m in _client(b).get_metric_history(new_id, "val_accuracy")] == [1, 2]  # epoch 0 is not here
    assert run.info.status == "FINISHED"

    again = run_cli("upload", str(record), f"tracking.uri={b}", timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"already uploaded {record} to {b} as run {new_id}; nothing sent" in again.stdout
    assert len(_runs(b)) == 1 and len(_client(b).get_metric_history(new_id, "val_accuracy")) == 2

    other = run_cli("upload", str(record), f"tracking.uri={c}", timeout=120)
    assert other.returncode == 0, other.stderr
    (copy,) = _runs(c)
    assert f"to {c} -> run {copy.info.run_id} (a new run;" in other.stdout
    assert f"also uploaded to {b} as run {new_id}" in other.stdout
    assert copy.info.status == "FINISHED" and "test_accuracy" in copy.data.metrics
    assert {"config.yaml", "model.weights.h5"} <= {a.path for a in _client(c).list_artifacts(copy.info.run_id)}


@SLOW
def test_upload_completes_the_run_it_made_in_its_own_store(record, recorded, run_cli):
    server, _, run_id = recorded
    result = run_cli("upload", str(record), f"tracking.uri={server.url}", timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"to {server.url} -> run {run_id} (" in result.stdout and "partial" not in result.stdout
    client = _client(server.url)
    assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == [0, 1, 2]
    assert client.get_run(run_id).info.status == "FINISHED" and len(_runs(server.url)) == 1
    again = run_cli("upload", str(record), f"tracking.uri={server.url}", timeout=120)
    assert f"already uploaded {record} to {server.url} as run {run_id}; nothing sent" in again.stdout


# --- fast: a record the Spool itself writes, checked before anything is sent ---------------------

@pytest.mark.parametrize("call", [{"op": "artifacts", "kwargs": {"directory": "PRIVATE"}},
                                  {"op": "set_terminated", "kwargs": {"status": "FINISHED"}}])
def test_fast_a_spooled_record_with_a_call_not_allowed_is_refused_whole(cli_in_process, tmp_path, call):
    from fashion_lab.record.offline import Spool
    from fashion_lab.record.spool_checks import SECRET

    if call["op"] == "artifacts":
        call = {"op": "artifacts", "kwargs": {"directory": str(_secret_folder(tmp_path))}}  # absolute

    spool = Spool(tmp_path / "kept" / ("a" * 32), {"uri": "http://u:pw@h:1", "experiment": "fashion-lab",
                                                   "run_id": "a" * 32, "run_name": "kept", "tags": {},
                                                   "params": {"tracking.uri": "http://u:pw@h:1"}, SECRET: "b" * 32})
    spool.keep("metrics", {"metrics": {"loss": 1.0}, "step": 0, "timestamp": 1})
    _write_calls(spool.folder, [*_calls(spool.folder), call])
    result = cli_in_process("upload", str(spool.folder), f"tracking.uri=sqlite:///{tmp_path / 'b.db'}")
    _refused(result, "calls.jsonl line 2")
    assert not (tmp_path / "b.db").exists()  # nothing sent, no store made
    assert "pw" not in (spool.folder / "run.json").read_text()


def test_fast_every_call_the_recorder_keeps_passes_the_checks_and_uploads(cli_in_process, tmp_path):
    """The allow-list admits what fashion-lab writes: a record kept from a run's first call on."""
    from conftest import compose
    from fashion_lab.config import run_params
    from fashion_lab.data import describe_splits, load_data
    from fashion_lab.record.offline import Spool
    from fashion_lab.record.spool_checks import SECRET, read_record

    cfg = compose(["data=synthetic", "data.synthetic_train=300", "data.synthetic_test=100", "data.val_samples=60"])
    spool = Spool(tmp_path / "kept" / ("c" * 32), {"uri": "http://h:1", "experiment": "fashion-lab", "run_id": "c" * 32,
                                                   "run_name": "kept", "tags": {"fashion_lab.seed": "0"},
                                                   "params": {}, SECRET: "d" * 32})
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "history.csv").write_text("epoch,loss\n0,1.0\n")
    spool.keep("params", {"params": run_params(cfg)})
    spool.keep("datasets", {"splits": describe_splits(load_data(cfg.data))})
    spool.keep("metrics", {"metrics": {"loss": float("nan")}, "step": 0, "timestamp": 1})
    spool.keep("tags", {"tags": {"fashion_lab.failure": "TrainingDiverged: loss is nan"}})
    spool.keep("artifacts", {"directory": artifacts})
    spool.keep("terminate", {"status": "FAILED", "end_time": 2})
    assert [op for op, _ in read_record(spool.folder).calls] == ["params", "datasets", "metrics", "tags", "artifacts",
                                                                  "terminate"]
    uri = f"sqlite:///{tmp_path / 'b.db'}"
    result = cli_in_process("upload", str(spool.folder), f"tracking.uri={uri}")
    assert result.returncode == 0, result.stderr
    (run,) = _runs(uri)
    assert f"to {uri} -> run {run.info.run_id} (a new run; 6 calls sent)" in result.stdout
    assert run.info.status == "FAILED" and run.data.params["trainer.epochs"] == str(cfg.trainer.epochs)
    assert "partial" not in result.stdout  # nothing of the run went anywhere else
