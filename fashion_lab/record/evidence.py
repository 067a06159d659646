"""What earlier runs in the store say before a sweep is planned: its finished runs as plain data.

``sweep.plan=true`` reads this and trains nothing: it never creates a store, an experiment or a run
(a sqlite store that does not exist yet is simply no evidence).
"""

from __future__ import annotations

import pandas as pd

from fashion_lab.record import results
from fashion_lab.record.names import TAG
from fashion_lab.record.store import sqlite_path


def finished_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """FINISHED points and single runs of ``experiment`` (no parents), one row each: the tidy reader's
    columns (typed params, final metrics, duration_s, sweep_id, config_id, seed) plus ``host``.
    Empty when the store or the experiment does not exist."""
    if tracking_uri.startswith("sqlite:///") and not sqlite_path(tracking_uri).exists():
        return pd.DataFrame()
    client = results._client(tracking_uri)
    if client.get_experiment_by_name(experiment) is None:
        return pd.DataFrame()
    ids = results.experiment_ids(client, experiment)
    runs = [run for run in results.search_all(client, ids, "attributes.status = 'FINISHED'", progress=None)
            if run.data.tags.get(TAG + "role") not in ("sweep", "search")]
    frame = results._frame(runs)
    if len(frame):
        frame["host"] = [run.data.tags.get(TAG + "host") for run in runs]
    return frame
