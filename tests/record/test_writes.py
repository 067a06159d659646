"""record.writes: the layers above record tag, log and download by tracking config; the record opens the client."""

from __future__ import annotations

from conftest import compose
from mlflow import MlflowClient


def test_writes_reach_the_run_through_the_tracking_config(store, tmp_path):
    from fashion_lab.record import tracking

    cfg = compose([f"tracking.uri={store}"])
    client = tracking.client_for(cfg.tracking)
    run_id = client.create_run(tracking.ensure_experiment(client, cfg.tracking)).info.run_id

    tracking.tag_run(cfg.tracking, run_id, {"fashion_lab.failure": "at https://me:secret@host/x"})
    tracking.log_run_metrics(cfg.tracking, run_id, {"trial_rss_mb": 100.0}, step=3)
    client.log_text(run_id, "the summary\n", "summary.txt")  # as close_parent_run writes a sweep's

    run = MlflowClient(store).get_run(run_id)
    assert "secret" not in run.data.tags["fashion_lab.failure"]  # masked, as every tag is
    (point,) = MlflowClient(store).get_metric_history(run_id, "trial_rss_mb")
    assert (point.value, point.step) == (100.0, 3)
    path = tracking.download_artifact(store, run_id, "summary.txt", str(tmp_path))
    assert path.read_text() == "the summary\n"
    assert tracking.download_artifact(store, run_id, "confusion_matrix.png", str(tmp_path)) is None
