"""build_report: a sweep's (or search's) runs -> runs.csv, report.md and a self-contained report.html.

Everything is read through ``results`` (the tidy reader) and summarised by ``stats``;
this module only arranges tables, sentences and figures into one document.
"""

from __future__ import annotations

import base64
import html
import io
import math
import sys
import tempfile
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fashion_lab.analysis import importance, stats  # noqa: E402
from fashion_lab.analysis.answers import base_level  # noqa: E402
from fashion_lab.record import results  # noqa: E402
from fashion_lab.record.untrusted import path_component  # noqa: E402

METRICS = {"test_accuracy": "test accuracy", "best_val_accuracy": "validation accuracy"}
# Params that never define a factor: replication, bookkeeping, where things are stored.
_NOT_FACTORS = ("trainer.seed", "trainer.verbose", "tracking.", "report.", "reproduce.", "ui.", "sweep.",
                "data.cache", "data.dir")
_HISTORY_LIMIT = 2000  # learning curves read at most this many runs' histories (one request each, ~4 ms)


# --- a tiny document: rendered both as Markdown and as HTML ---------------------------------

class Document:
    def __init__(self, title: str):
        self.title, self.blocks = title, []

    def h(self, text: str):
        self.blocks.append(("h", text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def bullets(self, items: list[str]):
        if items:
            self.blocks.append(("ul", items))

    def table(self, frame: pd.DataFrame, index: bool = False):
        if frame is not None and not frame.empty:
            self.blocks.append(("table", frame.reset_index() if index else frame))

    def code(self, text: str):
        self.blocks.append(("pre", text))

    def image(self, name: str, png: bytes, caption: str):
        self.blocks.append(("img", name, png, caption))

    @staticmethod
    def _fmt(value) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return ""
            if value.is_integer():
                return f"{value:g}"
            # 4 decimals for accuracies; small values (learning rates) keep 3 significant digits
            return f"{value:.4f}" if abs(value) >= 0.01 else f"{value:.3g}"
        return "" if value is None or value is pd.NaT else str(value)

    def markdown(self, image_dir: str) -> str:
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                out += [f"## {block[1]}", ""]
            elif kind == "p":
                out += [block[1], ""]
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "pre":
                out += ["```", block[1], "```", ""]
            elif kind == "table":
                frame = block[1]
                out.append("| " + " | ".join(map(str, frame.columns)) + " |")
                out.append("|" + "---|" * len(frame.columns))
                for row in frame.itertuples(index=False):
                    out.append("| " + " | ".join(self._fmt(v).replace("|", "\\|") for v in row) + " |")
                out.append("")
            elif kind == "img":
                out += [f"![{block[3]}]({image_dir}/{block[1]})", ""]
        return "\n".join(out)

    def html(self) -> str:
        body = [f"<h1>{html.escape(self.title)}</h1>"]
        for block in self.blocks:
            kind = block[0]
            if kind == "h":
                body.append(f"<h2>{html.escape(block[1])}</h2>")
            elif kind == "p":
                body.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in block[1]) + "</ul>")
            elif kind == "pre":
                body.append(f"<pre>{html.escape(block[1])}</pre>")
            elif kind == "table":
                frame = block[1].map(self._fmt)
                body.append(frame.to_html(index=False, escape=True, border=0, classes="t"))
            elif kind == "img":
                data = base64.b64encode(block[2]).decode()
                body.append(f'<figure><img alt="{html.escape(block[3])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(block[3])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
                 "table.t{border-collapse:collapse;font-size:13px;margin:1em 0}"
                 "table.t td,table.t th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
                 "img{max-width:100%}pre{background:#f4f4f4;padding:.5em;overflow-x:auto}")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # never clip long labels
    plt.close(fig)
    return buffer.getvalue()


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
    keys = [c for c in (_column(frame, k) for k in tagged) if c and not c.startswith(_NOT_FACTORS)]
    if keys:
        return list(dict.fromkeys(keys))
    params = [c for c in frame.columns if "." in c and not c.startswith(_NOT_FACTORS)]
    return [c for c in params if frame[c].astype(str).nunique(dropna=False) > 1]


def tutorial_defaults() -> dict:
    """The default config of conf/ (what `fashion-lab train` runs with no overrides), flattened."""
    from fashion_lab.config import compose, flatten

    return flatten(compose())


# --- plots ----------------------------------------------------------------------------------

def plot_learning_curves(frame, history, keys) -> Optional[bytes]:
    curves = history[history["metric"] == "val_accuracy"]
    if curves.empty or not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        merged = curves.merge(frame[["run_id", key]], on="run_id")
        for level, group in merged.groupby(key):
            mean = group.groupby("step")["value"].agg(["mean", "std", "count"])
            epochs = mean.index + 1
            ax.plot(epochs, mean["mean"], marker="o", label=f"{level} (n={int(mean['count'].max())})")
            ax.fill_between(epochs, mean["mean"] - mean["std"].fillna(0), mean["mean"] + mean["std"].fillna(0),
                            alpha=0.15)
        ax.set(title=f"validation accuracy by {key}", xlabel="epoch", ylabel="val_accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _png(fig)


def plot_metric_vs_param(frame, keys) -> Optional[bytes]:
    """Each run as a dot, each level's mean with its 95 % CI; the y axis spans at least 10 pt."""
    keys = [k for k in keys if frame[k].notna().any()]
    if not keys or frame.empty:
        return None
    fig, axes = plt.subplots(len(METRICS), len(keys), figsize=(5 * len(keys), 3.6 * len(METRICS)), squeeze=False)
    rng = np.random.default_rng(0)
    for row, metric in enumerate(METRICS):
        for col, key in enumerate(keys):
            ax = axes[row][col]
            ax.set(xlabel=key, ylabel=metric)
            if metric not in frame or frame[metric].isna().all():
                continue
            levels = stats.levels_of(frame, key)
            shown = list(frame[metric].dropna())
            for i, level in enumerate(levels):
                values = frame.loc[frame[key] == level, metric].dropna().to_numpy(dtype=float)
                ax.scatter(i + rng.uniform(-0.08, 0.08, len(values)), values, alpha=0.5, s=16, color="tab:blue")
                mean, _, low, high, n = stats.mean_ci(values)
                if n >= 2:
                    ax.errorbar(i + 0.2, mean, yerr=[[mean - low], [high - mean]], fmt="o", color="tab:red",
                                capsize=4)
                    shown += [low, high]
                elif n == 1:
                    ax.plot(i + 0.2, mean, "o", color="tab:red", mfc="none")
            ax.set_xticks(range(len(levels)), [_label(lvl) for lvl in levels])
            low, high = min(shown), max(shown)
            middle, span = (low + high) / 2, max(0.10, (high - low) * 1.1)  # a 2-pt spread is no cliff
            bottom = min(max(0.0, middle - span / 2), 1.0 - span)
            ax.set_ylim(max(0.0, bottom), min(1.0, max(0.0, bottom) + span))
            ax.grid(alpha=0.3)
    fig.suptitle("each run (dots); level mean with 95 % CI pooled over the other factors (red)", fontsize=9)
    return _png(fig)


def _label(value) -> str:
    return Document._fmt(value) if isinstance(value, float) else str(value)


def plot_parallel(frame, keys) -> Optional[bytes]:
    """Parallel coordinates: each run a line through its swept values and metrics, coloured by test accuracy."""
    columns = [k for k in keys] + [m for m in METRICS if m in frame]
    if len(columns) < 2 or frame.empty:
        return None
    scaled = pd.DataFrame(index=frame.index)
    ticks = {}
    for c in columns:
        values = frame[c]
        if not pd.api.types.is_numeric_dtype(values) or c in keys:  # a swept value is a level: evenly spaced
            levels = [str(v) for v in stats.levels_of(frame, c)] if c in keys else sorted(values.astype(str).unique())
            levels = list(dict.fromkeys(levels + sorted(set(values.astype(str)) - set(levels))))
            ticks[c] = levels
            values = values.astype(str).map({lvl: i for i, lvl in enumerate(levels)})
        lo, hi = float(values.min()), float(values.max())
        scaled[c] = (values - lo) / (hi - lo) if hi > lo else 0.5
    colour = frame["test_accuracy"] if "test_accuracy" in frame else pd.Series(0.0, index=frame.index)
    norm = plt.Normalize(float(colour.min()), float(colour.max()) if colour.max() > colour.min() else colour.min() + 1)
    fig, ax = plt.subplots(figsize=(max(6, 2.6 * len(columns)), 4.5))
    for i, row in scaled.iterrows():
        ax.plot(range(len(columns)), row.values, color=plt.cm.viridis(norm(colour[i])), alpha=0.7)
    ax.set_xticks(range(len(columns)), [c.replace(".", ".\n", 1) for c in columns], fontsize=8)
    for j, c in enumerate(columns):  # each axis labelled at its own levels / range
        if c in ticks:
            n = len(ticks[c])
            for k, level in enumerate(ticks[c]):
                ax.text(j + 0.03, k / (n - 1) if n > 1 else 0.5, _label(results.typed(level)), fontsize=7,
                        va="center", ha="left", bbox=dict(fc="white", ec="none", alpha=0.7, pad=1))
        else:
            for y, v in ((0.0, frame[c].min()), (1.0, frame[c].max())):
                ax.text(j + 0.03, y, f"{v:.4g}", fontsize=7, va="center", ha="left")
        ax.axvline(j, color="grey", lw=0.8)
    ax.set_xlim(-0.2, len(columns) - 0.6)
    ax.set_ylim(-0.08, 1.08)
    ax.set_yticks([])
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="test_accuracy")
    ax.set_title("parallel coordinates (scaled per axis)")
    return _png(fig)


def best_confusion_matrix(tracking_uri: str, run_id: str) -> Optional[bytes]:
    """The best run's confusion matrix: its PNG artifact, else drawn from its CSV."""
    client = results._client(tracking_uri)  # the record layer's client (only tracking imports mlflow)
    with tempfile.TemporaryDirectory() as folder:
        for name in ("confusion_matrix.png", "confusion_matrix.csv"):
            try:
                path = Path(client.download_artifacts(run_id, name, folder))
            except Exception:  # noqa: BLE001 - missing artifact: try the next form
                continue
            if name.endswith(".png"):
                return path.read_bytes()
            from fashion_lab.run import plots

            matrix = pd.read_csv(path, index_col=0)
            out = Path(folder) / "cm.png"
            plots.confusion_matrix(matrix.values, list(matrix.columns), out, title=f"best run {run_id[:8]}")
            return out.read_bytes()
    return None


# --- the report -----------------------------------------------------------------------------

def _leaderboard(frame: pd.DataFrame, keys: list[str], metric: str) -> pd.DataFrame:
    columns = ["run_name", metric, "test_accuracy", *keys, "seed", "epochs_completed", "train_seconds", "run_id"]
    done = frame[frame["status"] == "FINISHED"]
    shown = [c for c in dict.fromkeys(columns) if c in done]
    return done.sort_values(metric, ascending=False)[shown] if metric in done else done[shown]


def _provenance(tracking_uri: str, frame: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    lines = [f"store: {tracking_uri}"]
    for column, label in (("git_commit", "git commit"), ("data_digest", "data digest")):
        if column in frame:
            values = sorted(set(frame[column].dropna()))
            lines.append(f"{label}: {', '.join(values) or 'not recorded'}")
    if len(frame):  # versions are identical across a sweep's runs in practice; read them once
        tags = results.parent_run(tracking_uri, frame["run_id"].iloc[0]).data.tags  # any run: get_run
        versions = [f"{k[len(results.TAG + 'version.'):]} {v}" for k, v in sorted(tags.items())
                    if k.startswith(results.TAG + "version.")]
        lines.append("versions: " + (", ".join(versions) or "not recorded"))
    commands = pd.DataFrame({
        "run_name": frame["run_name"],
        "recorded command": frame["command"] if "command" in frame else None,
        "reproduce": "fashion-lab reproduce " + frame["run_id"] + f" tracking.uri={tracking_uri}",
    })
    return lines, commands


class NothingToReport(LookupError):
    """The sweep has no finished run: there is nothing to estimate yet."""


def budget(finished: pd.DataFrame, keys: list[str]) -> dict:
    """What the evidence is: seeds per cell, epochs, and images, read from the runs."""
    seed = stats.seed_column(finished)
    if keys and seed:
        per_cell = finished.groupby([finished[k].astype(str) for k in keys])[seed].nunique()
        seeds = (int(per_cell.min()), int(per_cell.max()))
    else:
        seeds = (int(finished[seed].nunique()),) * 2 if seed else (1, 1)

    def values(column):
        return sorted({int(v) for v in finished[column].dropna()}) if column in finished else []

    return {"runs": len(finished), "cells": int(finished[keys].astype(str).drop_duplicates().shape[0]) if keys else 1,
            "seeds": seeds, "epochs": values("epochs_completed") or values("trainer.epochs"),
            "train_images": values("train_images") or _images(finished, "train"),
            "test_images": values("test_images") or _images(finished, "test")}


def _images(finished: pd.DataFrame, split: str) -> list[int]:
    """Image counts from the data params, for runs recorded before train_images/test_images were metrics."""
    def number(value):
        return None if value is None or value != value else int(value)

    counts = set()
    for _, row in finished.iterrows():
        name = row.get("data.name")
        if name not in ("synthetic", "fashion_mnist"):
            continue
        synthetic = name == "synthetic"
        if split == "test":
            n = number(row.get("data.synthetic_test")) if synthetic else 10000
        else:
            n = number(row.get("data.train_samples"))
            pool, val = number(row.get("data.synthetic_train")) if synthetic else 60000, number(row.get("data.val_samples"))
            if n is None and pool is not None and val is not None:
                n = pool - val
        if n is not None:
            counts.add(n)
    return sorted(counts)


def _span(values) -> str:
    values = list(values)
    if not values:
        return "not recorded"
    return f"{values[0]:,}" if len(set(values)) == 1 else f"{min(values):,} to {max(values):,}"


def budget_sentence(b: dict) -> str:
    seeds = f"{b['seeds'][0]}" if b["seeds"][0] == b["seeds"][1] else f"{b['seeds'][0]} to {b['seeds'][1]}"
    def count(values, unit):
        return f"{_span(values)} {unit}" if values else f"{unit} not recorded"

    return (f"Budget: {b['runs']} finished runs, {b['cells']} cells, {seeds} seed(s) per cell, "
            f"{count(b['epochs'], 'epoch(s)')}, {count(b['train_images'], 'training images')}, "
            f"{count(b['test_images'], 'test images')}.")


def caveat(b: dict) -> str:
    """What the budget means for the answer."""
    words = []
    if b["seeds"][0] < 2:
        words.append("cells with a single seed give no confidence")
    if b["epochs"] and max(b["epochs"]) < 10:
        words.append(f"{max(b['epochs'])} epochs is short of convergence: effects on the fully trained network "
                     f"can differ")
    if b["train_images"] and max(b["train_images"]) < 55000:
        words.append("a subset of the training data, not all 55,000 images")
    return ("Caveat: " + "; ".join(words) + ".") if words else ""


def analyse(finished: pd.DataFrame, keys: list[str], strategy: str, defaults: dict,
            target: float = 0.005) -> dict:
    """Effects, interactions and the sentences for ``finished`` runs (the report's and the sweep's answer)."""
    references = {key: base_level(finished, key, defaults) for key in keys}
    found = stats.effects(finished, keys, references, list(METRICS), strategy=strategy)
    confounded = {e.factor: e for e in found if e.confounded and e.metric == "test_accuracy"}
    sentences = [f"{stats.short(f)}: confounded, no estimate: {e.reason}." for f, e in confounded.items()]
    sentences += [stats.sentence(e, METRICS[e.metric]) for e in found if e.metric == "test_accuracy"
                  and e.factor not in confounded]
    sentences += [stats.sentence(e, METRICS[e.metric]) for e in found if e.metric != "test_accuracy"
                  and e.factor not in confounded]
    found_interactions = [] if strategy != "grid" else [
        i for m in METRICS for i in stats.interactions(finished, keys, references, m)]
    sentences += [stats.interaction_sentence(i, METRICS[i.metric]) for i in found_interactions if i.detected]
    sensitivity = [text for e in found if e.metric == "test_accuracy"
                   for text in [stats.sensitivity(e, target)] if text]
    return {"references": references, "effects": found, "interactions": found_interactions,
            "sentences": sentences, "sensitivity": sensitivity}


def answer_lines(finished: pd.DataFrame, keys: list[str], strategy: str, defaults: dict,
                 target: float = 0.005, plan: Optional[dict] = None, also: Optional[dict] = None) -> list[str]:
    """Budget, the answers on test accuracy, what else each comparison changes, what the design could
    detect, the caveat and (with ``plan``) the next step and its cost."""
    keys = [k for k in keys if not k.startswith(_NOT_FACTORS)]
    if finished.empty:
        return ["No run finished: nothing to answer."]
    b = budget(finished, keys)
    found = analyse(finished, keys, strategy, defaults, target)
    lines = [budget_sentence(b)]
    lines += [s for s in found["sentences"] if "test accuracy" in s] or ["Nothing was swept: no effect to state."]
    lines += also_lines(found["effects"], also) if also is not None else []
    lines += found["sensitivity"]
    lines += [caveat(b)] if caveat(b) else []
    lines += [next_step(found["effects"], b, target, plan)] if plan else []
    return lines


def also_lines(found: list, also: dict) -> list[str]:
    """One line per comparison: the other keys of the composed config that differ between its two levels
    (``optimizer=adam`` vs ``sgd`` also changes the learning rate and the momentum)."""
    lines = []
    for e in found:
        if e.metric != "test_accuracy" or e.confounded:
            continue
        differ = also.get((e.factor, str(e.level), str(e.reference)))
        if differ is None:
            continue
        what = f"{stats.short(e.factor)} {e.level} (vs {e.reference})"
        lines.append(f"{what} also changes " + ", ".join(f"{k} ({a} vs {b})" for k, (a, b) in differ.items()) + "."
                     if differ else f"{what} changes nothing else in the composed config.")
    return lines


def _minutes(seconds: float) -> str:
    return f"about {max(1, round(seconds / 60)):,} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h"


def next_step(found: list, b: dict, target: float, plan: dict) -> str:
    """What to run next and what it costs here, from this sweep's own run durations (``plan["run_seconds"]``):
    more seeds (sweep.until_sure) where a comparison is undecided, else the full data and 10 epochs."""
    seconds, command = plan["run_seconds"], plan["command"]
    undecided = [e for e in found if e.metric == "test_accuracy" and e.has_ci and not e.detected and e.sd > 0]
    if undecided:
        need = max((e.seeds_for(target) or 100_000) for e in undecided)
        # a resumed until_sure sweep re-uses the seeds it ran; any other command runs every seed anew
        runs = b["cells"] * max(0, need - (b["seeds"][0] if plan.get("resumes") else 0))
        return (f"Next: to detect \u00b1{target * 100:.1f} pt: about {stats.count(need)} seeds per level, "
                f"{runs:,} more runs, {_minutes(runs * seconds)} here ({seconds:.0f} s per run in this sweep): "
                f"{command} {plan['until_sure']} sweep.seeds={b['seeds'][0]} sweep.max_seeds={need}")
    epochs, images = max(b["epochs"] or [10]), max(b["train_images"] or [55000])
    if epochs >= 10 and images >= 55000:
        return "Next: every comparison is decided at full size; the full report below has the details."
    scale = max(1.0, 10 / epochs) * max(1.0, 55000 / images)  # run time grows with epochs x images
    full = " ".join(o for o in (command, "data=fashion_mnist" if images < 55000 else "",
                                "trainer.epochs=10" if epochs < 10 else "") if o)
    return (f"Next: decided at this budget; to see whether it holds fully trained (55,000 images, 10 epochs): "
            f"{_minutes(b['runs'] * seconds * scale)} here (this sweep's {seconds:.0f} s per run, scaled by "
            f"epochs x images): {full}")


def children_frame(children: list[dict], keys: list[str]) -> pd.DataFrame:
    """A sweep's finished points as a runs table (swept values, seed, final metrics), from the sweep's own record."""
    rows = []
    for child in children:
        if child.get("status") != "FINISHED":
            continue
        values = child["overrides"] if isinstance(child["overrides"], dict) else dict(
            o.split("=", 1) for o in child["overrides"] if "=" in o)
        values = {k.lstrip("+~"): v for k, v in values.items()}
        row = {k: results.typed(values.get(k)) for k in keys}
        row["seed"] = results.typed(values.get("trainer.seed"))
        row.update(child.get("metrics") or {})
        rows.append(row)
    return pd.DataFrame(rows)


def sweep_end_lines(children: list[dict], keys: list[str], defaults: dict, best: Optional[tuple[str, float]],
                    report_command: Optional[str], plan: Optional[dict] = None,
                    also: Optional[dict] = None) -> list[str]:
    """What a grid sweep prints last: the answer, how sure the top point is, where the full report is.
    A sweep's answer aims at +-1 pt (a newcomer's budget); the report keeps +-0.5 pt."""
    finished = children_frame(children, keys)
    seconds = [c["seconds"] for c in children if c.get("status") == "FINISHED" and c.get("seconds")]
    plan = {**plan, "run_seconds": sum(seconds) / len(seconds)} if plan and seconds else None
    lines = ["", "Answer:"] + [f"  {line}" for line in answer_lines(finished, keys, "grid", defaults, 0.01, plan,
                                                                   also)]
    if best is not None:
        lines.append(f"Highest val_accuracy: {best[0]} ({best[1]:.4f}). That ranks single runs; only the matched "
                     f"comparisons above say how sure a difference is.")
    if report_command:
        lines.append(f"Full report (effects.csv, plots): {report_command}")
    return lines


def _effects_table(found: list) -> pd.DataFrame:
    frame = stats.effects_frame(found)
    for column in ("diff", "ci_low", "ci_high"):
        frame[column] = frame[column].map(lambda v: "" if v != v else stats.pt(v))
    frame = frame.rename(columns={"diff": "diff (pt)", "ci_low": "CI low (pt)", "ci_high": "CI high (pt)",
                                  "n": "pairs"})
    return frame


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
    finished = frame[frame["status"] == "FINISHED"] if len(frame) else frame
    if finished.empty:
        states = ", ".join(f"{n} {s}" for s, n in frame["status"].value_counts().items()) if len(frame) else "no runs"
        raise NothingToReport(f"{title_name!s}: no finished run to report on yet ({states}); "
                              f"finish or resume it first")
    # The name comes from the store, which anyone on a team can write: one plain file name, always.
    folder = Path(out or Path("reports") / path_component(str(title_name)))
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "runs.csv", index=False)

    parent_tags = results.parent_run(tracking_uri, parent["run_id"]).data.tags if parent is not None else {}
    strategy = parent_tags.get(results.TAG + "strategy") or "grid"
    keys = swept_keys(finished, parent_tags)
    defaults = tutorial_defaults()
    b = budget(finished, keys)
    found = analyse(finished, keys, strategy, defaults, target)
    stats.effects_frame(found["effects"]).to_csv(folder / "effects.csv", index=False)

    doc = Document(f"fashion-lab report: {title_name}")
    doc.p(budget_sentence(b) + (" " + caveat(b) if caveat(b) else ""))
    if parent is not None:
        doc.p(f"{parent['role']} '{title_name}' (strategy {parent['strategy']}, parent run {parent['run_id']}, "
              f"status {parent['status']}): {len(frame)} runs, {len(finished)} finished, "
              f"{len(frame) - len(finished)} not finished. Swept: {', '.join(keys) or 'nothing'}.")
    else:
        doc.p(f"No sweep or search in the store: all {len(frame)} runs of experiment {experiment}.")
    doc.p(stats.METHOD)

    doc.h("Answers")
    doc.bullets(found["sentences"] or ["Nothing was swept, so there is no effect to state."])
    doc.h("What this design could detect")
    doc.bullets(found["sensitivity"] or [
        "A search estimates no effects: run the factors it points to as a grid with sweep.seeds=3."
        if strategy != "grid" else "No comparison has two or more matched pairs with a spread: repeat the sweep "
                                   "over seeds (sweep.seeds=3) to measure one."])
    doc.h("Effects (effects.csv; differences in percentage points, 95 % CI on matched pairs)")
    doc.table(_effects_table(found["effects"]))
    confounded = sorted({f"{e.factor}: {e.reason}" for e in found["effects"] if e.confounded})
    doc.bullets(confounded)
    if found["interactions"]:
        doc.h("Interactions (ab - a - b + reference, within each seed)")
        doc.table(pd.DataFrame([{"factors": " x ".join(i.factors), "levels": " x ".join(map(str, i.levels)),
                                 "reference": " x ".join(map(str, i.references)), "metric": i.metric,
                                 "contrast (pt)": stats.pt(i.diff) if i.n else "",
                                 "CI low (pt)": stats.pt(i.low) if i.low == i.low else "",
                                 "CI high (pt)": stats.pt(i.high) if i.high == i.high else "",
                                 "seeds": i.n} for i in found["interactions"]]))
    doc.h("Levels (each level pooled over the other factors; descriptive, 95 % t interval within [0, 1])")
    for key in keys:
        doc.p(f"{key} (reference level: {found['references'][key]}, the tutorial's value if swept, "
              f"else the first level)")
        doc.table(stats.level_table(finished, key, list(METRICS)))
    if len(keys) == 2:
        for m in METRICS:
            table = stats.interaction_table(finished, keys, m)
            if table is not None:
                doc.p(f"Cells: mean {m} ± std (n) for each {keys[0]} (rows) x {keys[1]} (columns)")
                doc.table(table)

    doc.h(f"Leaderboard (single runs, best first by {metric}: a ranking, not an effect)")
    doc.table(_leaderboard(frame, keys, metric).head(50))

    importance_plots = importance.add_to_report(doc, finished, keys, parent["strategy"] if parent is not None
                                                else None, metric)  # searches, and grids of 4+ factors

    doc.h("Plots")
    images = list(importance_plots)
    run_ids = list(finished["run_id"])[:_HISTORY_LIMIT]
    history = results.history_frame(tracking_uri, run_ids, metrics=("val_accuracy",), progress=progress)
    for name, png, caption in (
            ("learning_curves.png", plot_learning_curves(finished, history, keys),
             "validation accuracy per epoch (from 1), mean ± std per level"),
            ("metric_vs_param.png", plot_metric_vs_param(finished, keys),
             "metric vs each swept parameter: runs and level means with 95 % CI"),
            ("parallel_coordinates.png", plot_parallel(finished, keys), "parallel coordinates of the sweep")):
        if png:
            images.append((name, png, caption))
    board = _leaderboard(frame, keys, metric)
    if len(board):
        best = board.iloc[0]
        png = best_confusion_matrix(tracking_uri, best["run_id"])
        if png:
            images.append(("confusion_matrix.png", png, f"best run {best['run_name']}: test confusion matrix"))
    (folder / "plots").mkdir(exist_ok=True)
    for name, png, caption in images:
        (folder / "plots" / name).write_bytes(png)
        doc.image(name, png, caption)

    doc.h("Failed or interrupted runs")
    failed = frame[frame["status"] != "FINISHED"]
    if len(failed):
        doc.table(failed[[c for c in ("run_name", "status", "failure", "run_id") if c in failed]])
    else:
        doc.p("None: every run finished.")

    doc.h("Provenance")
    lines, commands = _provenance(tracking_uri, frame)
    doc.bullets(lines)
    doc.table(commands)

    (folder / "report.md").write_text(doc.markdown("plots"))
    (folder / "report.html").write_text(doc.html())
    return folder
