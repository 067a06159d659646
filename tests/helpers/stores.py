"""Constructed stores (from test_report): a parent with one child per point, known params and metrics."""

from __future__ import annotations

from conftest import compose


def _constructed_store(uri: str, points: list[dict], swept: list[str], failed: str | None = None,
                       name: str = "known", role: str = "sweep", strategy: str = "grid") -> str:
    """A parent ``name`` with one child per point: params and test/val accuracy as given."""
    from fashion_lab.record import tracking

    cfg = compose([f"tracking.uri={uri}"])
    client = tracking.client_for(cfg.tracking)
    exp = tracking.ensure_experiment(client, cfg.tracking)
    pid = tracking.open_parent_run(cfg.tracking, name=name, role=role, strategy=strategy, sweep_name=name,
                                   swept_keys=swept, definition="")
    for i, point in enumerate(points):
        run = client.create_run(exp, run_name=f"p{i}", tags={
            **tracking.child_tags(pid, name, "point", "grid"), "fashion_lab.seed": str(point["seed"])})
        tracking.log_params(client, run.info.run_id, {k: v for k, v in point.items() if "." in k})
        tracking.log_metrics(client, run.info.run_id, {"test_accuracy": point["acc"],
                                                       "best_val_accuracy": point["acc"] - 0.01})
        client.set_terminated(run.info.run_id, "FINISHED")
    if failed:
        run = client.create_run(exp, run_name="broken", tags=tracking.child_tags(pid, "known", "point", "grid"))
        client.set_tag(run.info.run_id, "fashion_lab.failure", failed)
        client.set_terminated(run.info.run_id, "FAILED")
    client.set_terminated(pid, "FINISHED")
    return pid
