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

from fashion_lab import importance, results, stats  # noqa: E402
from fashion_lab.untrusted import path_component  # noqa: E402

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
            return f"{value:g}" if value.is_integer() else f"{value:.4f}"
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
    fig.savefig(buffer, format="png", dpi=90)
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
    keys = [c for c in (_column(frame, k) for k in tagged) if c]
    if keys:
        return list(dict.fromkeys(keys))
    params = [c for c in frame.columns if "." in c and not c.startswith(_NOT_FACTORS)]
    return [c for c in params if frame[c].astype(str).nunique(dropna=False) > 1]


def tutorial_defaults() -> dict:
    """The default config of conf/ (what `fashion-lab train` runs with no overrides), flattened."""
    from fashion_lab.config import compose, flatten

    return flatten(compose())


def base_level(frame: pd.DataFrame, key: str, defaults: dict):
    """The tutorial's value of ``key`` if the sweep has it, else the first level."""
    levels = sorted(frame[key].dropna().unique(), key=str)
    default = defaults.get(key)
    for level in levels:
        if default is not None and str(level) == str(results.typed(str(default))):
            return level
        if default is not None and isinstance(level, (int, float)) and isinstance(default, (int, float)) \
                and float(level) == float(default):
            return level
    return levels[0] if levels else None


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
    if not keys:
        return None
    fig, axes = plt.subplots(len(METRICS), len(keys), figsize=(5 * len(keys), 3.6 * len(METRICS)), squeeze=False)
    for row, metric in enumerate(METRICS):
        for col, key in enumerate(keys):
            ax = axes[row][col]
            levels = sorted(frame[key].dropna().unique(), key=str)
            positions = {lvl: i for i, lvl in enumerate(levels)}
            x = frame[key].map(positions)
            jitter = np.random.default_rng(0).uniform(-0.08, 0.08, len(frame))
            ax.scatter(x + jitter, frame.get(metric), alpha=0.6, s=18)
            means = frame.groupby(key)[metric].mean() if metric in frame else pd.Series(dtype=float)
            ax.plot([positions[lvl] for lvl in means.index], means.values, "r_-", markersize=20, alpha=0.8)
            ax.set_xticks(range(len(levels)), [str(lvl) for lvl in levels])
            ax.set(xlabel=key, ylabel=metric)
            ax.grid(alpha=0.3)
    return _png(fig)


def plot_parallel(frame, keys) -> Optional[bytes]:
    """Parallel coordinates: each run a line through its swept values and metrics, coloured by test accuracy."""
    columns = [k for k in keys] + [m for m in METRICS if m in frame]
    if len(columns) < 2 or frame.empty:
        return None
    scaled = pd.DataFrame(index=frame.index)
    ticks = {}
    for c in columns:
        values = frame[c]
        if not pd.api.types.is_numeric_dtype(values):
            levels = sorted(values.astype(str).unique())
            ticks[c] = levels
            values = values.astype(str).map({lvl: i for i, lvl in enumerate(levels)})
        lo, hi = float(values.min()), float(values.max())
        scaled[c] = (values - lo) / (hi - lo) if hi > lo else 0.5
    colour = frame["test_accuracy"] if "test_accuracy" in frame else pd.Series(0.0, index=frame.index)
    norm = plt.Normalize(float(colour.min()), float(colour.max()) if colour.max() > colour.min() else colour.min() + 1)
    fig, ax = plt.subplots(figsize=(max(6, 2.2 * len(columns)), 4))
    for i, row in scaled.iterrows():
        ax.plot(range(len(columns)), row.values, color=plt.cm.viridis(norm(colour[i])), alpha=0.7)
    ax.set_xticks(range(len(columns)), columns, rotation=15)
    for j, c in enumerate(columns):
        label = " / ".join(ticks[c]) if c in ticks else f"{frame[c].min():.4g} .. {frame[c].max():.4g}"
        ax.text(j, -0.12, label, ha="center", fontsize=7)
    ax.set_ylim(-0.2, 1.05)
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
            from fashion_lab import plots

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


def build_report(tracking_uri: str, out: Optional[str | Path] = None, *, experiment: Optional[str] = "fashion-lab",
                 sweep: Optional[str] = None, metric: str = "best_val_accuracy", progress=sys.stderr) -> Path:
    """Write runs.csv, report.md, report.html (and plots/) for a sweep or search; returns the folder."""
    parent = results.resolve_sweep(tracking_uri, experiment, sweep)
    frame = results.runs_frame(tracking_uri, experiment=experiment,
                               sweep=None if parent is None else parent["run_id"], all_runs=parent is None,
                               progress=progress)
    if parent is None:
        frame = frame[frame["role"].isin(["sweep", "search"]) == False]  # noqa: E712 - plain runs only
    title_name = (parent["sweep_name"] or parent["run_name"]) if parent is not None else (experiment or "all runs")
    # The name comes from the store, which anyone on a team can write: one plain file name, always.
    folder = Path(out or Path("reports") / path_component(str(title_name)))
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "runs.csv", index=False)

    parent_tags = results.parent_run(tracking_uri, parent["run_id"]).data.tags if parent is not None else {}
    finished = frame[frame["status"] == "FINISHED"]
    keys = swept_keys(finished if len(finished) else frame, parent_tags)
    defaults = tutorial_defaults()

    doc = Document(f"fashion-lab report: {title_name}")
    if parent is not None:
        doc.p(f"{parent['role']} '{title_name}' (strategy {parent['strategy']}, parent run {parent['run_id']}, "
              f"status {parent['status']}): {len(frame)} runs, {len(finished)} finished, "
              f"{len(frame) - len(finished)} not finished. Swept: {', '.join(keys) or 'nothing'}.")
    else:
        doc.p(f"No sweep or search in the store: all {len(frame)} runs of experiment {experiment}.")

    doc.h(f"Leaderboard (best first by {metric})")
    doc.table(_leaderboard(frame, keys, metric).head(50))

    all_sentences: list[str] = []
    effect_blocks = []
    for key in keys:
        base = base_level(finished, key, defaults)
        levels = stats.level_table(finished, key, list(METRICS))
        diffs, sentences = stats.effects(finished, key, base, METRICS)
        all_sentences += sentences
        effect_blocks.append((key, base, levels, diffs))
    doc.h("Answers")
    doc.bullets(all_sentences or ["Nothing was swept, so there is no effect to state."])
    doc.h("Factor effects (95 % CI: t distribution across runs; differences: Welch t interval)")
    for key, base, levels, diffs in effect_blocks:
        doc.p(f"{key} (reference level: {base}, the tutorial's value if swept, else the first level)")
        doc.table(levels)
        doc.table(diffs)
    if len(keys) == 2:
        for m in METRICS:
            table = stats.interaction(finished, keys, m)
            if table is not None:
                doc.p(f"Interaction: mean {m} for each {keys[0]} (rows) x {keys[1]} (columns)")
                doc.table(table, index=True)

    importance_plots = importance.add_to_report(doc, finished, keys, parent["strategy"] if parent is not None
                                                else None, metric)  # searches, and grids of 4+ factors

    doc.h("Plots")
    images = list(importance_plots)
    run_ids = list(finished["run_id"])[:_HISTORY_LIMIT]
    history = results.history_frame(tracking_uri, run_ids, metrics=("val_accuracy",), progress=progress)
    for name, png, caption in (
            ("learning_curves.png", plot_learning_curves(finished, history, keys),
             "validation accuracy per epoch, mean ± std per level"),
            ("metric_vs_param.png", plot_metric_vs_param(finished, keys), "metric vs each swept parameter"),
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
        doc.table(failed[["run_name", "status", "failure", "run_id"]])
    else:
        doc.p("None: every run finished.")

    doc.h("Provenance")
    lines, commands = _provenance(tracking_uri, frame)
    doc.bullets(lines)
    doc.table(commands)

    (folder / "report.md").write_text(doc.markdown("plots"))
    (folder / "report.html").write_text(doc.html())
    return folder
