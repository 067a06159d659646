"""fashion-lab reproduce RUN_ID: re-runs a recorded deterministic run in a new process and compares metrics."""

from __future__ import annotations

import re

import mlflow
import pytest

from fashion_lab.cli.record_commands import compare


def _children(uri: str, pid: str) -> list:
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("fashion-lab").experiment_id],
                              filter_string=f"tags.`fashion_lab.sweep_id` = '{pid}'", order_by=["attributes.start_time"])
    return [r for r in runs if r.info.run_id != pid]


def _metric_rows(stdout: str) -> dict[str, tuple[float, float]]:
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"(\w+)\s+(\S+)\s+(\S+)\s+\S+", line)
        if match and match.group(1) != "metric" and re.match(r"-?\d", match.group(2)):
            rows[match.group(1)] = (float(match.group(2)), float(match.group(3)))
    return rows


@pytest.mark.slow
def test_reproduce_deterministic_run_matches_exactly(sweep_store, run_cli):
    uri, pid = sweep_store
    original = _children(uri, pid)[0]  # trained in the test process; reproduced in a fresh one
    result = run_cli("reproduce", original.info.run_id, f"tracking.uri={uri}", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _metric_rows(result.stdout)
    assert {"test_accuracy", "test_loss", "best_val_accuracy"} <= set(rows)
    assert all(a == b for a, b in rows.values()), rows  # bit-identical, printed to 6 decimals
    assert "metrics match" in result.stdout
    client = mlflow.MlflowClient(tracking_uri=uri)
    new = client.search_runs([original.info.experiment_id],
                             filter_string=f"tags.`fashion_lab.reproduces` = '{original.info.run_id}'")
    assert len(new) == 1 and new[0].data.metrics["test_loss"] == original.data.metrics["test_loss"]


@pytest.mark.slow
def test_tampered_metric_makes_reproduce_fail(sweep_store, run_cli):
    uri, pid = sweep_store
    run = _children(uri, pid)[1]
    client = mlflow.MlflowClient(tracking_uri=uri)
    tampered = run.data.metrics["test_accuracy"] + 0.01
    client.log_metric(run.info.run_id, "test_accuracy", tampered, step=1)  # the latest value wins
    result = run_cli("reproduce", run.info.run_id, f"tracking.uri={uri}", timeout=240)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "test_accuracy" in result.stdout and "<- differs" in result.stdout
    assert _metric_rows(result.stdout)["test_accuracy"][0] == pytest.approx(tampered)


def test_reproduce_refuses_other_data(sweep_store, run_cli):
    uri, pid = sweep_store
    run = _children(uri, pid)[2]
    mlflow.MlflowClient(tracking_uri=uri).set_tag(run.info.run_id, "fashion_lab.data_digest", "0123456789abcdef")
    result = run_cli("reproduce", run.info.run_id, f"tracking.uri={uri}", timeout=120)
    assert result.returncode == 2
    assert "0123456789abcdef" in result.stderr and "refusing" in result.stderr


def test_reproduce_needs_a_known_run_id(store, cli_in_process):
    result = cli_in_process("reproduce", "trainer.epochs=2", timeout=60)
    assert result.returncode == 2 and "RUN_ID" in result.stderr
    result = cli_in_process("reproduce", "deadbeef", f"tracking.uri={store}", timeout=60)
    assert result.returncode == 2 and "'deadbeef' not found" in result.stderr


def test_compare_respects_tolerance_and_skips_timings():
    original = {"test_accuracy": 0.5, "train_seconds": 3.0}
    rows, ok = compare(original, {"test_accuracy": 0.501, "train_seconds": 9.0}, tolerance=0.0)
    assert not ok and [r[0] for r in rows] == ["test_accuracy"]
    assert compare(original, {"test_accuracy": 0.501}, tolerance=0.01)[1]
