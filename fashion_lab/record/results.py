"""The tidy reader: MLflow runs -> pandas DataFrames (one row per run; long per-epoch histories).

The report, the notebooks and any CLI summary read runs only through this module, so a
column has the same name everywhere: params are the dotted config keys, metrics their
MLflow names, and the ``fashion_lab.*`` tags become short columns (``sweep_id``, ``seed``...).
"""

from __future__ import annotations

import sys
import time
from typing import Iterable, Optional

import pandas as pd

from fashion_lab.config import keys
from fashion_lab.record.run_record import RunRecord, run_record

# The record layer (tracking) owns the client and the queries; importing it never imports Keras.
from fashion_lab.record.tracking import (TAG, NotInStore, client as _client, experiment_ids,  # noqa: F401 - re-exported
                                  role_filter, search_all, sweep_filter)

# fashion_lab.* tags that become their own columns (tag suffix -> column).
TAG_COLUMNS = ("role", "strategy", "sweep_name", "sweep_id", "seed", "config_id", "failure", "data_digest",
               "git_commit", "command", "overrides", "swept_keys", "trial_id", "reproduces")
RACE_COLUMNS = ("rung", "rungs", "stopped_at_rung", "stopped_at_epoch", "evidence")  # fashion_lab.race.* as race_*
BASE_COLUMNS = ["run_id", "run_name", "status", "start_time", "end_time", "duration_s", "parent_run_id",
                "experiment_id", *TAG_COLUMNS, *("race_" + name for name in RACE_COLUMNS)]


ResultsError = NotInStore  # the asked-for experiment or sweep is not in the store
typed = keys.typed  # an MLflow param string back to a Python value




def _row(run) -> dict:
    info, data = run.info, run.data
    tags = data.tags
    row = {"run_id": info.run_id, "run_name": info.run_name, "status": info.status,
           "start_time": pd.to_datetime(info.start_time, unit="ms", utc=True) if info.start_time else pd.NaT,
           "end_time": pd.to_datetime(info.end_time, unit="ms", utc=True) if info.end_time else pd.NaT,
           "duration_s": (info.end_time - info.start_time) / 1000 if info.end_time and info.start_time else None,
           "parent_run_id": tags.get("mlflow.parentRunId"), "experiment_id": info.experiment_id}
    for name in TAG_COLUMNS:
        row[name] = tags.get(TAG + name)
    for name in RACE_COLUMNS:  # no dot in the column: a dotted column reads as a swept param
        row["race_" + name] = tags.get(TAG + "race." + name)
    row["seed"] = typed(row["seed"])
    row.update({key: typed(value) for key, value in data.params.items()})
    row.update(data.metrics)
    return row


def _frame(runs: Iterable) -> pd.DataFrame:
    rows = [_row(run) for run in runs]
    frame = pd.DataFrame(rows, columns=None if rows else BASE_COLUMNS)
    for column in frame.columns:  # a param column mixing ints and floats (e.g. 0 and 0.25) reads as floats
        if frame[column].dtype == object and column not in BASE_COLUMNS:
            values = frame[column].dropna()
            if len(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                frame[column] = pd.to_numeric(frame[column])
    return frame


def find_parents(tracking_uri: str, experiment: Optional[str] = "fashion-lab") -> pd.DataFrame:
    """The sweep/search parent runs, newest first."""
    client = _client(tracking_uri)
    ids = experiment_ids(client, experiment)
    runs = [run for role in ("sweep", "search")  # tag filters have no IN
            for run in search_all(client, ids, role_filter(role), progress=None)]
    frame = _frame(runs)
    return frame.sort_values("start_time", ascending=False).reset_index(drop=True) if len(frame) else frame


def resolve_sweep(tracking_uri: str, experiment: Optional[str], sweep: Optional[str]) -> Optional[pd.Series]:
    """The parent run of ``sweep`` (a name or a parent run id; None = the latest), or None if no sweep exists."""
    parents = find_parents(tracking_uri, experiment)
    if parents.empty:
        if sweep is None:
            return None
        raise ResultsError(f"sweep {sweep!r} not found: the store has no sweeps or searches")
    if sweep is None:
        return parents.iloc[0]
    match = parents[(parents["run_id"] == sweep) | (parents["sweep_name"] == sweep) | (parents["run_name"] == sweep)]
    if match.empty:
        known = sorted(set(parents["sweep_name"].dropna()) | set(parents["run_name"].dropna()))
        raise ResultsError(f"sweep {sweep!r} not found; known sweeps/searches: {', '.join(known)} "
                           "(or give a parent run id)")
    return match.iloc[0]  # newest of that name


def runs_frame(tracking_uri: str, experiment: Optional[str] = "fashion-lab", sweep: Optional[str] = None,
               all_runs: bool = False, include_parent: bool = False, progress=sys.stderr) -> pd.DataFrame:
    """One row per run, with typed params, final metrics, status, duration and sweep columns.

    ``sweep``: a sweep/search name or parent run id; None selects the latest sweep, or every run
    of the experiment when it holds no sweep. ``all_runs=True`` reads the whole experiment.
    """
    client = _client(tracking_uri)
    ids = experiment_ids(client, experiment)
    if all_runs:
        return _frame(search_all(client, ids, progress=progress))
    parent = resolve_sweep(tracking_uri, experiment, sweep)
    if parent is None:
        return _frame(search_all(client, ids, progress=progress))
    pid = parent["run_id"]
    runs = search_all(client, ids, sweep_filter(pid), progress=progress)
    # Leave the parent out before building the frame: its missing params would turn int columns to float.
    frame = _frame(run for run in runs if include_parent or run.info.run_id != pid)
    return frame.sort_values("start_time").reset_index(drop=True) if len(frame) else frame


def history_frame(tracking_uri: str, run_ids: Iterable[str],
                  metrics: Iterable[str] = ("loss", "accuracy", "val_loss", "val_accuracy"),
                  progress=sys.stderr) -> pd.DataFrame:
    """Per-epoch values, long: columns run_id, metric, step (= epoch), value."""
    client = _client(tracking_uri)
    rows, ids, started = [], list(run_ids), time.perf_counter()
    for i, run_id in enumerate(ids, 1):
        for metric in metrics:
            for m in client.get_metric_history(run_id, metric):
                rows.append((run_id, metric, m.step, m.value))
        if len(ids) > 50 and (i % 50 == 0 or i == len(ids)):
            print(f"\rreading histories: {i}/{len(ids)} ({time.perf_counter() - started:.1f} s)",
                  end="\n" if i == len(ids) else "", file=progress, flush=True)
    frame = pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])
    frame["epoch"] = frame["step"]
    return frame


def parent_run(tracking_uri: str, run_id: str) -> RunRecord:
    """A parent run as plain data (for its swept_keys tag and summary)."""
    return run_record(_client(tracking_uri).get_run(run_id))
