"""Reading the store: the filter strings, every run of a search page by page, a sweep's children,
a trial's round, a metric's minimum, and the UI link of a sweep's view."""

from __future__ import annotations

import sys
import time
from typing import Optional

from fashion_lab.record.client import client_for
from fashion_lab.record.names import TAG
from fashion_lab.record.run_record import RunRecord, run_record


PAGE = 1000  # runs per search request: the store's maximum page size for sqlite/file/server stores


def role_filter(role: str) -> str:
    return f"tags.`{TAG}role` = '{role}'"


def sweep_filter(parent_run_id: str) -> str:
    """A sweep's runs: its parent and every point or trial (they carry its id)."""
    return f"tags.`{TAG}sweep_id` = '{parent_run_id}'"


def _progress(done: int, started: float, stream) -> None:
    if stream is not None:
        print(f"\rreading runs: {done} ({time.perf_counter() - started:.1f} s)", end="", file=stream, flush=True)


def search_all(client, experiment_ids: list[str], filter_string: str = "", progress=sys.stderr,
               order_by: Optional[list[str]] = None) -> list:
    """Every run matching the filter, page by page (a progress line on ``progress`` past one page)."""
    runs, token, started = [], None, time.perf_counter()
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=PAGE,
                                  page_token=token, order_by=order_by)
        runs.extend(page)
        token = page.token
        if token or len(runs) >= PAGE:
            _progress(len(runs), started, progress)
        if not token:
            break
    if len(runs) >= PAGE and progress is not None:
        print(file=progress)
    return runs


def children(tracking_cfg, parent_run_id: str, *, run_key: Optional[str] = None, trial_id: Optional[str] = None,
             finished: bool = False) -> list[RunRecord]:
    """The parent's child runs, oldest first; optionally one run key's or one trial's, or FINISHED only."""
    client = client_for(tracking_cfg)
    clauses = [sweep_filter(parent_run_id)]
    if run_key:
        clauses.append(f"tags.`{TAG}run_key` = '{run_key}'")
    if trial_id is not None:
        clauses.append(f"tags.`{TAG}trial_id` = '{trial_id}'")
    if finished:
        clauses.append("attributes.status = 'FINISHED'")
    experiment = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment], " and ".join(clauses), order_by=["attributes.start_time ASC"],
                              max_results=10000)
    return [run_record(run) for run in runs if run.info.run_id != parent_run_id]


def round_run(tracking_cfg, parent_run_id: str, trial_id: str, execution: str) -> Optional[RunRecord]:
    """The FINISHED run of one trial's execution under the parent (the latest if several), or None:
    the run a promoted Hyperband round continues. Executions pair up by index, so each keeps its seed."""
    runs = [run for run in children(tracking_cfg, parent_run_id, trial_id=trial_id, finished=True)
            if run.tag("execution", "0") == str(execution)]
    return runs[-1] if runs else None


def read_run(tracking_cfg, run_id: str) -> RunRecord:
    """One run of the store by id, as plain data."""
    return run_record(client_for(tracking_cfg).get_run(run_id))


def min_metric(tracking_cfg, run_id: str, key: str) -> float:
    """The lowest value a metric took over the run's epochs (e.g. val_loss), NaN if never logged."""
    history = client_for(tracking_cfg).get_metric_history(run_id, key)
    return float(min((m.value for m in history), default=float("nan")))


def sweep_view_url(host: str, port: int, experiment_id: str, parent_run_id: str) -> str:
    """The UI link of a sweep's shared view, in the model-training view: the UI's workflow switch is a
    browser setting that starts on GenAI (sidebar of traces and judges) whatever the experiment's kind,
    and only the experiment's bare page, not its runs page, follows the kind."""
    return (f"http://{host}:{port}/#/experiments/{experiment_id}/runs?viewStateShareKey={parent_run_id}"
            "&workflowType=machine_learning")
