"""Parameter importance: which swept keys explain the objective across a search's runs (exploratory).

A random forest is fit to predict the objective from the swept values, and scikit-learn's
permutation importance measures how much its fit (R²) drops when one key's values are shuffled.
This ranks keys; it is not an effect with an interval. A search does not hold the other keys
fixed, so its keys are read this way, as are grids with many factors (``MIN_GRID_FACTORS``);
a small grid is read by its effects (stats.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

MIN_GRID_FACTORS = 4  # a grid with fewer factors gets effects only
MIN_RUNS = 8          # fewer runs than this give a forest nothing to learn from
LABEL = "exploratory: a ranking from a model of the runs, not an effect with a confidence interval"


@dataclass
class Importance:
    table: pd.DataFrame  # key, importance (mean drop in R² when shuffled), std; most important first
    r2: float            # out-of-bag R² of the forest: how much of the objective the keys explain at all
    runs: int
    objective: str


def applies(strategy: Optional[str], keys: list[str]) -> bool:
    """A search (any strategy but grid) with two or more keys, or a grid with MIN_GRID_FACTORS or more."""
    return len(keys) >= (MIN_GRID_FACTORS if strategy in (None, "grid") else 2)


def _encoded(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Numbers stay numbers; anything else (choices, lists) becomes ordinal codes. Missing values
    (a conditional key, e.g. momentum under adam) stay NaN, which the forest splits on natively."""
    columns = {}
    for key in keys:
        values = pd.to_numeric(frame[key], errors="coerce")
        if values.isna().sum() > frame[key].isna().sum():  # not numeric: a category
            values = frame[key].astype(str).astype("category").cat.codes.astype(float)
        columns[key] = values.astype(float)
    return pd.DataFrame(columns, index=frame.index)


def parameter_importance(frame: pd.DataFrame, keys: list[str], objective: str,
                         seed: int = 0) -> Optional[Importance]:
    """Permutation importance of each swept key over a random forest of the runs; None if too few runs."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    if objective not in frame or not keys:
        return None
    rows = frame[np.isfinite(pd.to_numeric(frame[objective], errors="coerce"))]
    if len(rows) < MIN_RUNS:
        return None
    x, y = _encoded(rows, keys), rows[objective].astype(float).to_numpy()
    forest = RandomForestRegressor(n_estimators=200, min_samples_leaf=2, oob_score=True, random_state=seed)
    forest.fit(x, y)
    shuffled = permutation_importance(forest, x, y, n_repeats=10, random_state=seed)
    table = pd.DataFrame({"key": keys, "importance": shuffled.importances_mean, "std": shuffled.importances_std})
    table = table.sort_values("importance", ascending=False, ignore_index=True)
    return Importance(table=table, r2=float(forest.oob_score_), runs=len(rows), objective=objective)


def plot(found: Importance) -> bytes:
    """A horizontal bar per key (most important on top), with the spread over shuffles."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = found.table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(table) + 1.6))
    ax.barh(table["key"], table["importance"], xerr=table["std"], color="tab:blue", alpha=0.8)
    ax.axvline(0, color="grey", lw=0.8)
    ax.set(xlabel=f"drop in R² of {found.objective} when the key is shuffled",
           title=f"parameter importance (exploratory; {found.runs} runs, forest OOB R² {found.r2:.2f})")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def summary(found: Importance) -> str:
    """One paragraph for the report: the ranking, how well the keys explain the objective, the label."""
    top = found.table.iloc[0]
    return (f"Which swept keys explain {found.objective} ({LABEL}). Permutation importance over a random "
            f"forest of {found.runs} runs (scikit-learn); the forest's out-of-bag R² is {found.r2:.2f} "
            f"(near 0 or below: the keys explain little and the ranking is noise). Most important: "
            f"{top['key']}.")


def add_to_report(doc, frame: pd.DataFrame, keys: list[str], strategy: Optional[str],
                  objective: str) -> list[tuple[str, bytes, str]]:
    """Write the section into ``doc`` (report.Document) when it applies; returns its plot (name, png,
    caption) for the report's plots, or nothing."""
    found = parameter_importance(frame, keys, objective) if applies(strategy, keys) else None
    if found is None:
        return []
    doc.h("Parameter importance (exploratory)")
    doc.p(summary(found))
    doc.table(found.table)
    return [("parameter_importance.png", plot(found), "parameter importance (exploratory)")]
