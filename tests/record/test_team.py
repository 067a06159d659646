"""A team's record: runs say where they ran, nothing is lost when the server goes away, a shared
store is not trusted, a basic-auth server, and a grid through Hydra's submitit_local launcher."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers.servers import mlflow_server

TINY = ["data=synthetic", "trainer.verbose=0", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "tracking.log_plots=false"]


def _client(uri):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


# --- where a run ran -------------------------------------------------------------------------

def test_runs_record_host_and_slurm_job(monkeypatch):
    import socket

    from fashion_lab.record.tracking import TAG, provenance_tags

    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(key, raising=False)
    tags = provenance_tags([], 0)
    assert tags[TAG + "host"] == socket.gethostname()
    assert TAG + "slurm_job_id" not in tags
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert provenance_tags([], 0)[TAG + "slurm_job_id"] == "4242"
    # submitit submits job arrays: the id sacct/scancel/submitit use is ARRAY_TASK
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4240")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert provenance_tags([], 0)[TAG + "slurm_job_id"] == "4240_2"


# --- the spool: kept calls replayed into a real store ------------------------------------------

def test_unreachable_tells_outage_from_refusal():
    from mlflow.exceptions import MlflowException

    from fashion_lab.record.offline import unreachable

    assert unreachable(ConnectionRefusedError(111, "refused"))
    assert unreachable(MlflowException("API request to http://h/api/2.0/mlflow/runs/log-batch failed with "
                                       "exception HTTPConnectionPool(host='h', port=1): Max retries exceeded"))
    assert unreachable(MlflowException("API request to endpoint /x failed with error code 503 != 200"))
    assert not unreachable(MlflowException("Invalid value 'x' for parameter 'max_results'"))
    assert not unreachable(ValueError("bad metric"))


def test_kept_record_uploads_into_its_run_and_into_a_new_store(tmp_path):
    from fashion_lab.record import offline
    from fashion_lab.record import tracking

    uri = f"sqlite:///{tmp_path / 'a.db'}"
    client = _client(uri)
    experiment = client.create_experiment("fashion-lab")
    from fashion_lab.record.spool_checks import DIGEST_TAG, SECRET, digest, read_record

    secret = "ab" * 16  # the proof the record made its run (tracked_run draws it at random)
    run = client.create_run(experiment, run_name="kept", tags={"fashion_lab.seed": "0", DIGEST_TAG: digest(secret)})
    identity = {"uri": uri, "experiment": "fashion-lab", "run_id": run.info.run_id, "run_name": "kept",
                "tags": {"fashion_lab.seed": "0"}, "params": {"trainer.epochs": "2"}, SECRET: secret}
    spool = offline.Spool(tmp_path / "kept" / run.info.run_id, identity)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "model.weights.h5").write_bytes(b"weights")
    (artifacts / "history.csv").write_text("epoch,loss\n0,1.0\n1,0.5\n")
    for epoch, loss in enumerate((1.0, 0.5)):
        spool.keep("metrics", {"metrics": {"loss": loss}, "step": epoch, "timestamp": 1000 + epoch},
                   ConnectionRefusedError(111, "refused"))
    spool.keep("metrics", {"metrics": {"test_accuracy": 0.8}, "step": 0, "timestamp": 2000})
    spool.keep("artifacts", {"directory": artifacts})
    spool.keep("terminate", {"status": "FINISHED", "end_time": 3000})
    (artifacts / "model.weights.h5").unlink()  # the caller's folder was temporary: the spool has a copy
    assert "ConnectionRefusedError" in spool.message() and "fashion-lab upload" in spool.message()

    folder = spool.folder
    # meanwhile another command on this host reaped the run (its process is gone, the record waits here)
    client.set_tag(run.info.run_id, "fashion_lab.failure", f"process 1:1 {tracking.REAPED}")
    client.set_terminated(run.info.run_id, status="KILLED")
    assert tracking.upload_record(read_record(folder), uri).run_id == run.info.run_id
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.info.end_time == 3000
    assert "fashion_lab.failure" not in got.data.tags
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == [1.0, 0.5]
    assert got.data.metrics["test_accuracy"] == 0.8
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"model.weights.h5", "history.csv"}
    assert tracking.upload_record(read_record(folder), uri).run_id == run.info.run_id  # once only
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2

    other = f"sqlite:///{tmp_path / 'b.db'}"  # a store that never saw the run: recreated from the record
    fresh = tmp_path / "copy"
    fresh.mkdir()
    (fresh / offline.RUN_FILE).write_text((folder / offline.RUN_FILE).read_text())
    (fresh / offline.CALLS_FILE).write_text("".join(json.dumps(c) + "\n" for c in [
        {"op": "metrics", "kwargs": {"metrics": {"loss": 0.1}, "step": 0, "timestamp": 5}, "time": 0},
        {"op": "terminate", "kwargs": {"status": "KILLED", "end_time": 6}, "time": 0}]))
    new_id = tracking.upload_record(read_record(fresh), other).run_id
    restored = _client(other).get_run(new_id)
    assert restored.info.status == "KILLED" and restored.info.run_name == "kept"
    assert restored.data.params == {"trainer.epochs": "2"} and restored.data.tags["fashion_lab.seed"] == "0"


def test_upload_command_refuses_what_is_not_a_record(cli_in_process, tmp_path):
    result = cli_in_process("upload", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no run records" in result.stderr


# --- a shared store is not trusted --------------------------------------------------------------

def test_reproduce_refuses_a_planted_interpolation(run_cli, tmp_path, store, monkeypatch):
    from fashion_lab.config import compose
    from omegaconf import OmegaConf

    client = _client(store)
    experiment = client.create_experiment("fashion-lab")
    run = client.create_run(experiment, run_name="planted")
    text = OmegaConf.to_yaml(compose(["data=synthetic"]), resolve=True).replace(
        "experiment: fashion-lab", "experiment: ${oc.env:FASHION_LAB_SECRET}")
    assert "${oc.env:FASHION_LAB_SECRET}" in text
    client.log_text(run.info.run_id, text, "config.yaml")
    client.set_terminated(run.info.run_id)
    result = run_cli("reproduce", run.info.run_id, f"tracking.uri={store}",
                     env={"FASHION_LAB_SECRET": "s3cr3t-value"}, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "interpolations" in result.stderr and "tracking.experiment" in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "s3cr3t-value" not in result.stdout + result.stderr
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # nothing new recorded anywhere
    assert not any("s3cr3t-value" in str(r.data.params) + str(r.data.tags) for r in runs)


@pytest.mark.slow
def test_report_writes_inside_its_folder_whatever_the_sweep_name(run_cli, tmp_path):
    from conftest import build_sweep_store

    uri = f"sqlite:///{tmp_path / 'store.db'}"
    build_sweep_store(uri, name="../../escaped")
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("report", f"tracking.uri={uri}", cwd=work, timeout=300)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "escaped").exists()
    written = [p for p in tmp_path.rglob("report.md")]
    assert len(written) == 1 and written[0].parent.parent == work / "reports", written


# --- a server that goes away mid-run ------------------------------------------------------------

@pytest.mark.slow
def test_server_lost_mid_run_keeps_the_full_record_and_upload_puts_it_back(tmp_path, run_cli):
    import subprocess
    import sys

    from conftest import FASHION_LAB, cli_env

    with mlflow_server() as server:
        overrides = [*TINY, "data.synthetic_train=600", "trainer.epochs=12", f"tracking.uri={server.url}",
                     "tracking.run_name=outage", f"tracking.offline_dir={tmp_path / 'kept'}"]
        proc = subprocess.Popen([FASHION_LAB, "train", *overrides], cwd=tmp_path,
                                env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        client = _client(server.url)
        run_id = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # stop the server after the first epoch
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
            if runs and client.get_metric_history(runs[0].info.run_id, "loss"):
                run_id = runs[0].info.run_id
                break
            time.sleep(0.3)
        assert run_id, "training never logged an epoch"
        server.stop()
        started = time.monotonic()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert time.monotonic() - started < 120, "the outage blocked training"
        folder = tmp_path / "kept" / run_id
        message = [line for line in err.splitlines() if "fashion-lab upload" in line and "could not" in line]
        assert message and str(folder) in message[0] and f"fashion-lab upload {folder}" in message[0], err
        assert "test_accuracy=" in out  # the result was still printed

        calls = [json.loads(line) for line in (folder / "calls.jsonl").read_text().splitlines()]
        ops = [c["op"] for c in calls]
        assert ops[-1] == "terminate" and calls[-1]["kwargs"]["status"] == "FINISHED"
        kept_files = {p.name for p in folder.glob("artifacts-*/*")}
        assert {"config.yaml", "history.csv", "model.weights.h5"} <= kept_files
        finals = [c for c in calls if c["op"] == "metrics" and "test_accuracy" in c["kwargs"]["metrics"]]
        assert finals
        identity = json.loads((folder / "run.json").read_text())
        assert identity["run_id"] == run_id and identity["params"]["trainer.epochs"] == "12"

        refused = run_cli("upload", str(folder), f"tracking.uri={server.url}", timeout=120)  # still down: kept, one line, exit 1
        assert refused.returncode == 1 and "still unreachable" in refused.stderr
        assert not (folder / "uploaded.json").exists()

        server.start()  # the same store, back on the same port
        result = run_cli("upload", str(tmp_path / "kept"), f"tracking.uri={server.url}", timeout=120)
        assert result.returncode == 0, result.stderr
        assert f"-> run {run_id}" in result.stdout
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(run_id, "val_accuracy")] == list(range(12))
        assert "test_accuracy" in run.data.metrics and "best_val_accuracy" in run.data.metrics
        assert {"config.yaml", "history.csv", "model.weights.h5"} <= {a.path for a in client.list_artifacts(run_id)}
        weights = Path(client.download_artifacts(run_id, "model.weights.h5", str(tmp_path)))
        assert weights.stat().st_size > 10_000


# --- basic auth ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_basic_auth_server_refuses_without_credentials_and_works_with_them(run_cli, tmp_path):
    with mlflow_server(app_name="basic-auth") as server:
        overrides = [*TINY, "trainer.epochs=1", f"tracking.uri={server.url}"]
        clean = {"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""}
        refused = run_cli("train", *overrides, env=clean, timeout=300)
        assert refused.returncode != 0
        assert refused.stderr.strip().count("\n") == 0, refused.stderr  # before TensorFlow says anything
        line = refused.stderr.strip()
        assert line.startswith("fashion-lab: error: tracking.uri=") and "HTTP 401" in line
        assert "MLFLOW_TRACKING_USERNAME" in line and "MLFLOW_TRACKING_PASSWORD" in line
        wrong = run_cli("train", *overrides, timeout=300,
                        env={"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": "wrong"})
        assert wrong.returncode == 2 and "'admin' was refused" in wrong.stderr
        grid = run_cli("train", "-m", *overrides, "trainer.seed=0,1", env=clean, timeout=300)
        assert grid.returncode == 2 and "HTTP 401" in grid.stderr and "Traceback" not in grid.stderr

        user, password = server.admin
        ok = run_cli("train", *overrides, timeout=300,
                     env={"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password})
        assert ok.returncode == 0, ok.stderr
        import os

        os.environ.update(MLFLOW_TRACKING_USERNAME=user, MLFLOW_TRACKING_PASSWORD=password)
        try:
            client = _client(server.url)
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
            assert [r.info.status for r in runs] == ["FINISHED"]
        finally:
            os.environ.pop("MLFLOW_TRACKING_USERNAME")
            os.environ.pop("MLFLOW_TRACKING_PASSWORD")


# --- submitit on one machine --------------------------------------------------------------------

@pytest.mark.slow
def test_grid_through_submitit_local(run_cli, tmp_path, store):
    result = run_cli("train", "-m", *TINY, "trainer.epochs=1", "model.conv_dropout=0,0.25",
                     "hydra/launcher=submitit_local", f"tracking.uri={store}", timeout=400)
    assert result.returncode == 0, result.stderr
    client = _client(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parent = [r for r in runs if r.data.tags.get("fashion_lab.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert sorted(r.info.run_name for r in children) == ["conv_dropout=0", "conv_dropout=0.25"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert child.data.params["sweep.parent_run_id"] == parent[0].info.run_id  # from the job's own config


@pytest.mark.slow
def test_search_through_submitit_local_with_parallel_trials(run_cli, tmp_path, store):
    from helpers.search import _search_sweeps

    result = run_cli("tune", "lr_search", *TINY, "trainer.epochs=1", "tuner.max_trials=4", "tuner.parallel_trials=2",
                     "hydra/launcher=submitit_local", f"tracking.uri={store}", timeout=500,
                     env={"FASHION_LAB_SWEEPS_DIR": str(_search_sweeps(tmp_path))})
    assert result.returncode == 0, result.stdout + result.stderr
    client = _client(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}
    assert len({r.data.tags.get("fashion_lab.trial_id") for r in trials}) == 4
