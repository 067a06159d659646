"""Beyond one machine, for real on one: PostgreSQL 15, an ``mlflow server`` on it with proxied
artifacts, and a one-node SLURM cluster with accounting; sweeps and searches run as SLURM jobs
(``hydra/launcher=submitit_slurm``) logging to the server. All slow (servers and a cluster)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.search import _search_sweeps
from helpers.servers import mlflow_server, postgres, slurm_cluster

pytestmark = pytest.mark.slow

TINY = ["data=synthetic", "trainer.verbose=0", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "tracking.log_plots=false"]
# One CPU per job (2 run at once on the 2-core node). Jobs learn their parent run from their own
# overrides (sweep.parent_run_id), never from the launching process's files or environment.
SLURM = ["hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.timeout_min=10"]


@pytest.fixture(scope="module")
def team():
    """(mlflow server, slurm cluster): PostgreSQL + mlflow server with proxied artifacts + SLURM."""
    started = time.monotonic()
    with postgres() as db, mlflow_server(db) as server, slurm_cluster() as cluster:
        assert time.monotonic() - started < 60, "servers took over a minute to start"
        yield server, cluster


def _client(url):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=url)


def _runs(client, experiment):
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000) if found else []


def _env(cluster):
    return {"SLURM_CONF": str(cluster.conf)}


def test_grid_sweep_as_slurm_jobs_on_a_postgres_server(team, run_cli, tmp_path):
    server, cluster = team
    uri, experiment = server.url, "slurm-grid"
    result = run_cli("train", "-m", *TINY, "trainer.epochs=1", "model.conv_dropout=0,0.1,0.25", *SLURM,
                     f"tracking.uri={uri}", f"tracking.experiment={experiment}", env=_env(cluster), timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    client = _client(uri)
    runs = _runs(client, experiment)
    parent = [r for r in runs if r.data.tags.get("fashion_lab.role") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    # every point FINISHED exactly once, under its parent, which reached the job through its config
    assert sorted(r.info.run_name for r in children) == ["conv_dropout=0", "conv_dropout=0.1", "conv_dropout=0.25"]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.params["sweep.parent_run_id"] for r in children} == {parent[0].info.run_id}
    # tagged with their SLURM jobs, which accounting knows as completed
    jobs = [r.data.tags["fashion_lab.slurm_job_id"] for r in children]
    assert len(set(jobs)) == 3 and all(re.fullmatch(r"\d+(_\d+)?", j) for j in jobs), jobs
    states = cluster.job_states(jobs)
    assert {states[j] for j in jobs} == {"COMPLETED"}, states
    # artifacts go through the server (proxied) and come back from it
    child = children[0]
    assert child.info.artifact_uri.startswith("mlflow-artifacts:")
    config = Path(client.download_artifacts(child.info.run_id, "config.yaml", str(tmp_path)))
    assert "conv_dropout" in config.read_text()
    assert {"model.weights.h5", "history.csv"} <= {a.path for a in client.list_artifacts(child.info.run_id)}
    # the report reads the team record from the server
    report = run_cli("report", f"tracking.uri={uri}", f"tracking.experiment={experiment}", timeout=300)
    assert report.returncode == 0, report.stderr
    text = next((tmp_path / "reports").rglob("report.md")).read_text()
    assert all(name in text for name in ("conv_dropout", "0.25"))


def test_scancel_leaves_the_run_killed(team, tmp_path):
    from conftest import FASHION_LAB, cli_env

    server, cluster = team
    uri, experiment = server.url, "slurm-cancel"
    proc = subprocess.Popen([FASHION_LAB, "train", "-m", *TINY, "trainer.epochs=200",
                             *SLURM, f"tracking.uri={uri}", f"tracking.experiment={experiment}"],
                            cwd=tmp_path, env=cli_env(**_env(cluster)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    client = _client(uri)
    child = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:  # cancel once it trains
        children = [r for r in _runs(client, experiment) if r.data.tags.get("mlflow.parentRunId")]
        if children and client.get_metric_history(children[0].info.run_id, "loss"):
            child = children[0]
            break
        time.sleep(0.5)
    assert child is not None, "the job never trained an epoch"
    job = child.data.tags["fashion_lab.slurm_job_id"]
    cluster.run("scancel", job)
    out, err = proc.communicate(timeout=180)  # submitit learns of the cancel through sacct
    assert proc.returncode != 0
    run = client.get_run(child.info.run_id)
    assert run.info.status == "KILLED", (run.info.status, err[-2000:])
    assert "signal 15" in run.data.tags.get("fashion_lab.failure", "")
    assert cluster.job_states([job])[job].startswith("CANCELLED")


def test_search_with_parallel_trials_as_slurm_jobs(team, run_cli, tmp_path):
    server, cluster = team
    uri, experiment = server.url, "slurm-search"
    env = {**_env(cluster), "FASHION_LAB_SWEEPS_DIR": str(_search_sweeps(tmp_path))}
    result = run_cli("tune", "lr_search", *TINY, "trainer.epochs=1", "tuner.max_trials=4",
                     "tuner.parallel_trials=2", *SLURM, f"tracking.uri={uri}",
                     f"tracking.experiment={experiment}", env=env, timeout=500)
    assert result.returncode == 0, result.stdout + result.stderr
    trials = [r for r in _runs(_client(uri), experiment) if r.data.tags.get("mlflow.parentRunId")]
    failures = [(r.info.status, r.data.tags.get("fashion_lab.failure")) for r in trials
                if r.info.status != "FINISHED"]
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}, (failures, result.stdout[-3000:])
    assert len({r.data.tags["fashion_lab.slurm_job_id"] for r in trials}) == 4
    assert len({r.data.tags.get("fashion_lab.trial_id") for r in trials}) == 4


def test_search_with_a_cancelled_trial_is_completed_by_a_rerun(team, run_cli, tmp_path):
    from conftest import FASHION_LAB, cli_env

    server, cluster = team
    uri, experiment = server.url, "slurm-search-cancel"
    env = {**_env(cluster), "FASHION_LAB_SWEEPS_DIR": str(_search_sweeps(tmp_path))}
    args = ["tune", "lr_search", *TINY, "trainer.epochs=30", "tuner.max_trials=3", "tuner.parallel_trials=2",
            *SLURM, f"tracking.uri={uri}", f"tracking.experiment={experiment}"]
    proc = subprocess.Popen([FASHION_LAB, *args], cwd=tmp_path, env=cli_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    client = _client(uri)
    victim = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        trials = [r for r in _runs(client, experiment) if r.data.tags.get("mlflow.parentRunId")]
        if trials and client.get_metric_history(trials[0].info.run_id, "loss"):
            victim = trials[0]
            break
        time.sleep(0.5)
    assert victim is not None, "no trial trained an epoch"
    cluster.run("scancel", victim.data.tags["fashion_lab.slurm_job_id"])
    proc.communicate(timeout=500)
    assert client.get_run(victim.info.run_id).info.status == "KILLED"
    rerun = run_cli(*args, env=env, timeout=500)  # the same command: re-runs the interrupted trial
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    trials = [r for r in _runs(client, experiment) if r.data.tags.get("mlflow.parentRunId")]
    finished = [r for r in trials if r.info.status == "FINISHED"]
    assert len(finished) == 3, [(r.info.run_name, r.info.status) for r in trials]
    assert len({r.data.tags.get("fashion_lab.trial_id") for r in finished}) == 3
