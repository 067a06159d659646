"""Writes to an existing run for the layers above record: they give the tracking config (or the store's
URI) and the record layer opens the MLflow client, so no client crosses the layer boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from fashion_lab.record.client import client, client_for, set_tags
from fashion_lab.record.run import log_metrics


def tag_run(tracking_cfg, run_id: str, tags: dict[str, Any]) -> None:
    """Set tags on a run (their values masked, as every tag's)."""
    set_tags(client_for(tracking_cfg), run_id, tags)


def log_run_metrics(tracking_cfg, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    log_metrics(client_for(tracking_cfg), run_id, metrics, step=step)


def download_artifact(tracking_uri: str, run_id: str, name: str, folder: str) -> Optional[Path]:
    """A run's artifact ``name`` downloaded into ``folder``; None when the run has none by that name."""
    store = client(tracking_uri)  # outside the try: a store that cannot be opened is an error, not "none"
    try:
        return Path(store.download_artifacts(run_id, name, folder))
    except Exception:  # noqa: BLE001 - MLflow raises several types for a missing artifact
        return None
