"""The report's figures: learning curves, metric vs parameter, parallel coordinates, the best confusion matrix."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from fashion_lab.analysis import stats  # noqa: E402
from fashion_lab.analysis.answers import METRICS  # noqa: E402
from fashion_lab.record import results, tracking  # noqa: E402
from fashion_lab.report.document import Document  # noqa: E402

def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")  # never clip long labels
    plt.close(fig)
    return buffer.getvalue()


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


def plot_paired_differences(found: list) -> Optional[bytes]:
    """Each comparison's mean paired difference (pt) with its 95 % interval on matched pairs, per metric;
    a hollow marker where a single pair gives no interval. The level intervals pool the seed spread; these
    do not, which is why they are narrower."""
    rows = [e for e in found if not e.confounded and e.n and e.diff == e.diff]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.45 * len(rows)))
    colours = {m: c for m, c in zip(METRICS, ("tab:blue", "tab:orange"))}
    for y, e in enumerate(reversed(rows)):
        colour = colours.get(e.metric, "tab:grey")
        if e.has_ci:
            ax.errorbar(e.diff * 100, y, xerr=[[(e.diff - e.low) * 100], [(e.high - e.diff) * 100]], fmt="o",
                        color=colour, capsize=4)
        else:
            ax.plot(e.diff * 100, y, "o", mfc="none", color=colour)
    ax.set_yticks(range(len(rows)), [f"{stats.short(e.factor)} {_label(e.level)} vs {_label(e.reference)}\n"
                                     f"{METRICS.get(e.metric, e.metric)}, {e.n} pairs" for e in reversed(rows)],
                  fontsize=8)
    ax.axvline(0, color="grey", lw=1)
    ax.set(xlabel="paired difference (pt), 95 % CI", title="paired differences per comparison (matched seeds)")
    ax.grid(alpha=0.3, axis="x")
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
    with tempfile.TemporaryDirectory() as folder:
        for name in ("confusion_matrix.png", "confusion_matrix.csv"):
            path = tracking.download_artifact(tracking_uri, run_id, name, folder)
            if path is None:  # missing artifact: try the next form
                continue
            if name.endswith(".png"):
                return path.read_bytes()
            from fashion_lab.run import plots

            matrix = pd.read_csv(path, index_col=0)
            out = Path(folder) / "cm.png"
            plots.confusion_matrix(matrix.values, list(matrix.columns), out, title=f"best run {run_id[:8]}")
            return out.read_bytes()
    return None
