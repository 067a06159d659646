"""Sweep-test helpers (from test_sweep): tiny synthetic points, and a store's parent and child runs."""

from __future__ import annotations

from pathlib import Path

# Tiny synthetic points: one epoch on 300 images trains in seconds.
TINY = ["data=synthetic", "trainer.epochs=1", "trainer.verbose=0", "data.synthetic_train=300",
        "data.synthetic_test=100", "data.val_samples=60"]


def runs_in(store: str):
    """Every run in the store as (parent runs, child runs), or ([], []) if the store was never created."""
    from mlflow import MlflowClient

    if not Path(store[len("sqlite:///"):]).exists():
        return [], []
    client = MlflowClient(tracking_uri=store)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=1000) if experiments else []
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children
