"""build_report: a sweep's (or search's) runs -> runs.csv, effects.csv, report.md and a self-contained
report.html.

Everything is read through ``results`` (the tidy reader) and summarised by ``analysis``; the
sections (report.sections) arrange tables, sentences and figures into one document.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import pandas as pd

from fashion_lab.analysis import stats
from fashion_lab.analysis.answers import NOT_FACTORS, analyse, budget
from fashion_lab.record import results
from fashion_lab.record.untrusted import csv_safe, path_component
from fashion_lab.report.document import Document
from fashion_lab.report.output import check_out, staged
from fashion_lab.report.sections import SECTIONS, ReportContext


# --- what was swept, and the tutorial's level of it -----------------------------------------

def _column(frame: pd.DataFrame, key: str) -> Optional[str]:
    """The runs-table column of a swept key ('optimizer' is a group choice: its column is optimizer.name)."""
    for candidate in (key, f"{key}.name"):
        if candidate in frame:
            return candidate
    return None


def swept_keys(frame: pd.DataFrame, parent_tags: dict) -> list[str]:
    """The parent's fashion_lab.swept_keys, else the params that vary across runs."""
    tagged = [k.strip() for k in (parent_tags.get(results.TAG + "swept_keys") or "").split(",") if k.strip()]
    keys = [c for c in (_column(frame, k) for k in tagged) if c and not c.startswith(NOT_FACTORS)]
    if keys:
        return list(dict.fromkeys(keys))
    params = [c for c in frame.columns if "." in c and not c.startswith(NOT_FACTORS)]
    return [c for c in params if frame[c].astype(str).nunique(dropna=False) > 1]


def tutorial_defaults() -> dict:
    """The default config of conf/ (what `fashion-lab train` runs with no overrides), flattened."""
    from fashion_lab.config import compose, flatten

    return flatten(compose())


class NothingToReport(LookupError):
    """The sweep has no finished run: there is nothing to estimate yet."""


def build_report(tracking_uri: str, out: Optional[str | Path] = None, *, experiment: Optional[str] = "fashion-lab",
                 sweep: Optional[str] = None, metric: str = "best_val_accuracy", progress=sys.stderr,
                 target: float = 0.005) -> Path:
    """Write runs.csv, effects.csv, report.md, report.html (and plots/) for a sweep or search; returns the folder.

    Raises NothingToReport when no run finished (nothing is written then)."""
    parent = results.resolve_sweep(tracking_uri, experiment, sweep)
    frame = results.runs_frame(tracking_uri, experiment=experiment,
                               sweep=None if parent is None else parent["run_id"], all_runs=parent is None,
                               progress=progress)
    if parent is None and len(frame):
        frame = frame[frame["role"].isin(["sweep", "search"]) == False]  # noqa: E712 - plain runs only
    title_name = (parent["sweep_name"] or parent["run_name"]) if parent is not None else (experiment or "all runs")
    every = frame  # runs.csv and the racing section keep a race's earlier rungs; the answers never use them
    if len(frame) and "race_rung" in frame:
        frame = frame[frame["race_rung"].isna() | (frame["race_rung"] == frame["race_rungs"])]
    finished = frame[frame["status"] == "FINISHED"] if len(frame) else frame
    if finished.empty:
        states = ", ".join(f"{n} {s}" for s, n in frame["status"].value_counts().items()) if len(frame) else "no runs"
        raise NothingToReport(f"{title_name!s}: no finished run to report on yet ({states}); "
                              f"finish or resume it first")
    # The name comes from the store, which anyone on a team can write: one plain file name, always.
    folder = Path(out or Path("reports") / path_component(str(title_name)))
    check_out(Path(os.path.abspath(folder)))  # before the analysis: a refused folder costs nothing
    parent_tags = results.parent_run(tracking_uri, parent["run_id"]).tags if parent is not None else {}
    strategy = parent_tags.get(results.TAG + "strategy") or "grid"
    keys = swept_keys(finished, parent_tags)
    b = budget(finished, keys)
    found = analyse(finished, keys, strategy, tutorial_defaults(), target)
    with staged(folder) as stage:  # built beside report.out, then swapped in whole
        ctx = ReportContext(tracking_uri=tracking_uri, experiment=experiment, metric=metric, progress=progress,
                            frame=frame, finished=finished, parent=parent, title=str(title_name),
                            strategy=strategy, keys=keys, budget=b, found=found, folder=stage, every=every)
        _write(ctx)
    return folder


def _write(ctx: ReportContext) -> None:
    """runs.csv, effects.csv, the sections' plots, report.md and report.html into ``ctx.folder``."""
    csv_safe(ctx.every).to_csv(ctx.folder / "runs.csv", index=False)  # run names and params come from the store
    csv_safe(stats.effects_frame(ctx.found["effects"])).to_csv(ctx.folder / "effects.csv", index=False)
    doc = Document(f"fashion-lab report: {ctx.title}")
    for section in SECTIONS:
        section(ctx, doc)
    (ctx.folder / "report.md").write_text(doc.markdown("plots"))
    (ctx.folder / "report.html").write_text(doc.html())
