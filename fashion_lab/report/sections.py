"""The report's sections, in order: each a function of (ReportContext, Document).

Adding a section is one function here and one entry in ``SECTIONS``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from fashion_lab.analysis import comparisons, importance, race_record, stats
from fashion_lab.analysis.answers import METRICS, _effects_table, budget_sentence, caveat
from fashion_lab.record import results
from fashion_lab.report import figures
from fashion_lab.report.document import Document

HISTORY_LIMIT = 2000  # learning curves read at most this many runs' histories (one request each, ~4 ms)


@dataclass
class ReportContext:
    """What every section reads: the runs, what was swept, and the analysis already made."""
    tracking_uri: str
    experiment: Optional[str]
    metric: str
    progress: Any
    frame: pd.DataFrame          # every run of the sweep
    finished: pd.DataFrame       # its FINISHED runs
    parent: Optional[dict]
    title: str
    strategy: str
    keys: list
    budget: dict
    found: dict                  # analysis.answers.analyse
    folder: Path
    images: list = field(default_factory=list)  # (file name, png, caption), written by the plots section
    every: Optional[pd.DataFrame] = None  # with a race's earlier rungs, which frame and finished leave out


def leaderboard(frame: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    columns = ["run_name", metric, "test_accuracy", *keys, "seed", "epochs_completed", "train_seconds", "run_id"]
    done = frame[frame["status"] == "FINISHED"]
    shown = [c for c in dict.fromkeys(columns) if c in done]
    return done.sort_values(metric, ascending=False)[shown] if metric in done else done[shown]


def summary(ctx: ReportContext, doc: Document) -> None:
    doc.p(budget_sentence(ctx.budget) + (" " + caveat(ctx.budget) if caveat(ctx.budget) else ""))
    p, frame, finished = ctx.parent, ctx.frame, ctx.finished
    if p is not None:
        doc.p(f"{p['role']} '{ctx.title}' (strategy {p['strategy']}, parent run {p['run_id']}, "
              f"status {p['status']}): {len(frame)} runs, {len(finished)} finished, "
              f"{len(frame) - len(finished)} not finished. Swept: {', '.join(ctx.keys) or 'nothing'}.")
    else:
        doc.p(f"No sweep or search in the store: all {len(frame)} runs of experiment {ctx.experiment}.")
    doc.p(stats.METHOD)


def answers(ctx: ReportContext, doc: Document) -> None:
    doc.h("Answers")
    doc.bullets(ctx.found["sentences"] or ["Nothing was swept, so there is no effect to state."])
    doc.h("What this design could detect")
    doc.bullets(ctx.found["sensitivity"] or [
        "A search estimates no effects: run the factors it points to as a grid with sweep.seeds=3."
        if ctx.strategy != "grid" else "No comparison has two or more matched pairs with a spread: repeat the sweep "
                                       "over seeds (sweep.seeds=3) to measure one."])


def racing(ctx: ReportContext, doc: Document) -> None:
    """A raced grid (sweep.race=true): every stopped arm with its rung, epoch and evidence; the epochs saved."""
    every = ctx.every if ctx.every is not None else ctx.frame
    done = every[every["status"] == "FINISHED"] if "race_rung" in every else every.iloc[:0]
    if done.empty or done["race_rung"].isna().all():
        return
    children = [{"overrides": [f"{k}={row[k]}" for k in [*ctx.keys, "trainer.seed"] if k in row],
                 "metrics": {"epochs_completed": row.get("epochs_completed", 0)},
                 "tags": {f"race.{n}": row[f"race_{n}"] for n in results.RACE_COLUMNS if pd.notna(row[f"race_{n}"])}}
                for row in done.to_dict("records")]
    lines = race_record.race_lines(children, ctx.keys, int(done["epochs_completed"].max())) or []
    doc.h("Racing")
    doc.bullets([line.strip() for line in lines])


def effects(ctx: ReportContext, doc: Document) -> None:
    found = ctx.found
    doc.h("Effects (effects.csv; differences in percentage points, 95 % CI on matched pairs)")
    doc.table(_effects_table(found["effects"]))
    doc.p(comparisons.epoch_note(ctx.finished))
    doc.bullets(sorted({f"{e.factor}: {e.reason}" for e in found["effects"] if e.confounded}))
    if found["interactions"]:
        doc.h("Interactions (ab - a - b + reference, within each seed)")
        doc.table(pd.DataFrame([{"factors": " x ".join(i.factors), "levels": " x ".join(map(str, i.levels)),
                                 "reference": " x ".join(map(str, i.references)), "metric": i.metric,
                                 "contrast (pt)": stats.pt(i.diff) if i.n else "",
                                 "CI low (pt)": stats.pt(i.low) if i.low == i.low else "",
                                 "CI high (pt)": stats.pt(i.high) if i.high == i.high else "",
                                 "seeds": i.n} for i in found["interactions"]]))


def evidence(ctx: ReportContext, doc: Document) -> None:
    """What the answer rests on: the paired differences with their intervals (figure), the multiple-comparison
    correction, which epoch each figure is, and whether batch norm had settled."""
    doc.h("What the answer rests on")
    png = figures.plot_paired_differences(ctx.found["effects"])
    if png:  # a file beside the report, not embedded: the HTML's embedded figures stay the Plots section's
        (ctx.folder / "plots").mkdir(exist_ok=True)
        (ctx.folder / "plots" / "paired_differences.png").write_bytes(png)
        doc.p("Figure plots/paired_differences.png: each comparison's mean paired difference (matched seeds) "
              "with its 95 % interval, the interval the answer states; much narrower than the pooled level "
              "intervals of metric_vs_param.png.")
    table = comparisons.holm_table(ctx.found["effects"])
    if len(table) > 1:
        doc.table(table)
    doc.p(comparisons.correction_sentence(table))
    doc.p(comparisons.epoch_note(ctx.finished))
    if ctx.strategy == "grid" and len(ctx.finished):
        run_ids = list(ctx.finished["run_id"])[:HISTORY_LIMIT]
        history = results.history_frame(ctx.tracking_uri, run_ids, metrics=("accuracy", "val_accuracy"),
                                         progress=ctx.progress)
        warning = comparisons.bn_warmup(ctx.finished, history)
        if warning:
            doc.p(warning)


def levels(ctx: ReportContext, doc: Document) -> None:
    keys, finished = ctx.keys, ctx.finished
    doc.h("Levels (each level pooled over the other factors; descriptive, 95 % t interval within [0, 1])")
    doc.p(comparisons.epoch_note(finished))
    for key in keys:
        doc.p(f"{key} (reference level: {ctx.found['references'][key]}, the tutorial's value if swept, "
              f"else the first level)")
        doc.table(stats.level_table(finished, key, list(METRICS)))
    if len(keys) == 2:
        for m in METRICS:
            table = stats.interaction_table(finished, keys, m)
            if table is not None:
                doc.p(f"Cells: mean {m} ± std (n) for each {keys[0]} (rows) x {keys[1]} (columns)")
                doc.table(table)


def ranking(ctx: ReportContext, doc: Document) -> None:
    doc.h(f"Leaderboard (single runs, best first by {ctx.metric}: a ranking, not an effect)")
    doc.p(comparisons.epoch_note(ctx.finished))
    doc.table(leaderboard(ctx.frame, ctx.keys, ctx.metric).head(50))


def parameter_importance(ctx: ReportContext, doc: Document) -> None:
    """Searches, and grids of 4+ factors: exploratory, its plot goes with the others."""
    strategy = ctx.parent["strategy"] if ctx.parent is not None else None
    ctx.images += importance.add_to_report(doc, ctx.finished, ctx.keys, strategy, ctx.metric)


def plots(ctx: ReportContext, doc: Document) -> None:
    finished, keys = ctx.finished, ctx.keys
    doc.h("Plots")
    run_ids = list(finished["run_id"])[:HISTORY_LIMIT]
    history = results.history_frame(ctx.tracking_uri, run_ids, metrics=("val_accuracy",), progress=ctx.progress)
    for name, png, caption in (
            ("learning_curves.png", figures.plot_learning_curves(finished, history, keys),
             "validation accuracy per epoch (from 1), mean ± std per level"),
            ("metric_vs_param.png", figures.plot_metric_vs_param(finished, keys),
             "metric vs each swept parameter: runs and level means with 95 % CI"),
            ("parallel_coordinates.png", figures.plot_parallel(finished, keys), "parallel coordinates of the sweep")):
        if png:
            ctx.images.append((name, png, caption))
    board = leaderboard(ctx.frame, keys, ctx.metric)
    if len(board):
        best = board.iloc[0]
        png = figures.best_confusion_matrix(ctx.tracking_uri, best["run_id"])
        if png:
            ctx.images.append(("confusion_matrix.png", png, f"best run {best['run_name']}: test confusion matrix"))
    (ctx.folder / "plots").mkdir(exist_ok=True)
    for name, png, caption in ctx.images:
        (ctx.folder / "plots" / name).write_bytes(png)
        doc.image(name, png, caption)


def failures(ctx: ReportContext, doc: Document) -> None:
    doc.h("Failed or interrupted runs")
    failed = ctx.frame[ctx.frame["status"] != "FINISHED"]
    if len(failed):
        doc.table(failed[[c for c in ("run_name", "status", "failure", "run_id") if c in failed]])
    else:
        doc.p("None: every run finished.")


def recorded_command(overrides, reproduces=None) -> str:
    """The command a run records, rebuilt from its recorded overrides with shell quoting.

    The store's own ``command`` tag is never shown: anyone who can write the store could make it
    ``fashion-lab train `touch x` $(id)``, and a reader copies it into a shell."""
    words = overrides.split() if isinstance(overrides, str) else []
    head = ["fashion-lab", "reproduce", str(reproduces)] if isinstance(reproduces, str) and reproduces else \
        ["fashion-lab", "train"]
    return " ".join(shlex.quote(w) for w in head + words)


def provenance(ctx: ReportContext, doc: Document) -> None:
    frame, uri = ctx.frame, ctx.tracking_uri
    lines = [f"store: {uri}"]
    for column, label in (("git_commit", "git commit"), ("data_digest", "data digest")):
        if column in frame:
            values = sorted(set(frame[column].dropna()))
            lines.append(f"{label}: {', '.join(values) or 'not recorded'}")
    if len(frame):  # versions are identical across a sweep's runs in practice; read them once
        tags = results.parent_run(uri, frame["run_id"].iloc[0]).tags  # any run: get_run
        versions = [f"{k[len(results.TAG + 'version.'):]} {v}" for k, v in sorted(tags.items())
                    if k.startswith(results.TAG + "version.")]
        lines.append("versions: " + (", ".join(versions) or "not recorded"))
    doc.h("Provenance")
    doc.bullets(lines)
    doc.table(pd.DataFrame({
        "run_name": frame["run_name"],
        "recorded command": [recorded_command(o, r) for o, r in zip(
            frame.get("overrides", [None] * len(frame)), frame.get("reproduces", [None] * len(frame)))],
        "reproduce": [shlex.join(["fashion-lab", "reproduce", run_id, f"tracking.uri={uri}"])
                      for run_id in frame["run_id"]],
    }))


SECTIONS = (summary, answers, racing, effects, evidence, levels, ranking, parameter_importance, plots, failures, provenance)
