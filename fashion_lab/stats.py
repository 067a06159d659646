"""Factor effects from a tidy runs table: per-level summaries, Welch differences, and the sentences.

Pure pandas/scipy, no MLflow: tests feed it constructed numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95


def mean_ci(values) -> tuple[float, float, float, float, int]:
    """mean, std (ddof=1), CI low, CI high (t distribution); CI is NaN with fewer than 2 values."""
    v = np.asarray(pd.Series(values).dropna(), dtype=float)
    n = len(v)
    if n == 0:
        return (math.nan,) * 4 + (0,)
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan, n
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * std / math.sqrt(n)
    return mean, std, mean - half, mean + half, n


@dataclass
class Difference:
    diff: float
    low: float      # NaN when no interval can be given
    high: float
    n: int
    n_base: int

    @property
    def has_ci(self) -> bool:
        return not math.isnan(self.low)

    @property
    def detectable(self) -> bool:
        return self.has_ci and (self.low > 0 or self.high < 0)


def welch_difference(values, base) -> Difference:
    """mean(values) - mean(base) with a Welch t interval (unequal variances)."""
    a = np.asarray(pd.Series(values).dropna(), dtype=float)
    b = np.asarray(pd.Series(base).dropna(), dtype=float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, math.nan, math.nan, len(a), len(b))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # identical values within each level: the difference is exact
        return Difference(diff, diff, diff, len(a), len(b))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * se
    return Difference(diff, diff - half, diff + half, len(a), len(b))


def _pt(x: float) -> str:
    """Accuracy difference in percentage points, with a real minus sign."""
    return f"{x * 100:+.1f}".replace("-", "\u2212")


def _runs(d: Difference) -> str:
    return f"{d.n} runs each" if d.n == d.n_base else f"{d.n} vs {d.n_base} runs"


def sentence(key: str, level, base_level, metric_label: str, d: Difference) -> str:
    """One sentence that answers "did changing KEY to LEVEL help, by how much, how sure?"."""
    what = f"{short(key)} {level} (vs {base_level})"
    if math.isnan(d.diff):
        return f"{what}: no {metric_label} recorded."
    if not d.has_ci:
        return (f"{what} changed {metric_label} by {_pt(d.diff)} pt, but no confidence can be given "
                f"({d.n} vs {d.n_base} runs; repeat with more seeds).")
    ci = f"95 % CI {_pt(d.low)} to {_pt(d.high)} pt, {_runs(d)}"
    if not d.detectable:
        return f"{what}: no detectable difference in {metric_label} ({_pt(d.diff)} pt, {ci})."
    return f"{what} changed {metric_label} by {_pt(d.diff)} pt ({ci})."


def short(key: str) -> str:
    """'model.conv_dropout' -> 'conv dropout', 'optimizer.name' -> 'optimizer' for sentences."""
    parts = key.split(".")
    word = parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
    return word.replace("_", " ")


def level_table(frame: pd.DataFrame, key: str, metrics: list[str]) -> pd.DataFrame:
    """Per level of ``key``: n and mean, std, 95 % CI of each metric."""
    rows = []
    for level, group in frame.groupby(key, sort=True, dropna=False):
        row = {key: level}
        for metric in metrics:
            mean, std, low, high, n = mean_ci(group[metric]) if metric in group else (math.nan,) * 4 + (0,)
            row.update({"n": n, f"{metric} mean": mean, f"{metric} std": std,
                        f"{metric} CI low": low, f"{metric} CI high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def effects(frame: pd.DataFrame, key: str, base_level, metrics: dict[str, str]) -> tuple[pd.DataFrame, list[str]]:
    """Differences of each level from ``base_level`` (Welch CI) and one sentence per level and metric."""
    rows, sentences = [], []
    base = frame[frame[key] == base_level]
    for level, group in frame.groupby(key, sort=True):
        if level == base_level:
            continue
        row = {key: level, "vs": base_level}
        for metric, label in metrics.items():
            if metric not in frame:
                continue
            d = welch_difference(group[metric], base[metric])
            row.update({f"{metric} diff": d.diff, f"{metric} diff CI low": d.low,
                        f"{metric} diff CI high": d.high})
            sentences.append(sentence(key, level, base_level, label, d))
        rows.append(row)
    return pd.DataFrame(rows), sentences


def interaction(frame: pd.DataFrame, keys: list[str], metric: str) -> Optional[pd.DataFrame]:
    """Mean ± std (n) of ``metric`` for every combination of two factors."""
    if len(keys) != 2 or metric not in frame:
        return None
    a, b = keys

    def cell(values):
        mean, std, _, _, n = mean_ci(values)
        return f"{mean:.4f} ± {std:.4f} (n={n})" if n > 1 else f"{mean:.4f} (n={n})"

    return frame.groupby([a, b])[metric].apply(cell).unstack(b)
