"""What an answer rests on: p-values of the matched comparisons with Holm's correction, which epoch each
figure is, and whether batch norm's running statistics had settled when validation was measured.

Pure pandas/scipy: tests feed it constructed numbers.
"""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd
from scipy import stats as st

from fashion_lab.analysis import stats

# Batch norm warm-up: a short comparison (at most SHORT_EPOCHS epochs) where, in at least SHARE of the runs
# with batch norm, validation accuracy at epoch 1 is more than GAP below training accuracy at epoch 1. Keras
# validates with the running mean and variance (momentum 0.99: ~100 steps to forget their start), so early
# epochs' validation partly measures how far those statistics have come, not what the network has learned.
SHORT_EPOCHS = 5
GAP = 0.10
SHARE = 0.25


def paired_p(e: stats.Effect) -> float:
    """Two-sided p-value of the paired t test behind ``e`` (NaN without an interval)."""
    if e.confounded or not e.has_ci:
        return math.nan
    if not e.sd > 0:
        return 0.0 if e.diff != 0 else 1.0
    t = e.diff / (e.sd / math.sqrt(e.n))
    return float(2 * st.t.sf(abs(t), e.n - 1))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order; NaN stays NaN and does
    not count in the family. The i-th smallest of m is multiplied by (m - i + 1), kept monotone, capped at 1."""
    known = sorted((p, i) for i, p in enumerate(pvalues) if p == p)
    m = len(known)
    adjusted = [math.nan] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def holm_table(found: list, metric: str = "test_accuracy") -> pd.DataFrame:
    """One row per comparison on ``metric``: difference, p (paired t), Holm-adjusted p, and the verdict."""
    rows = [e for e in found if e.metric == metric and not e.confounded and e.has_ci]
    adjusted = holm([paired_p(e) for e in rows])
    return pd.DataFrame([{"comparison": f"{stats.short(e.factor)} {e.level} vs {e.reference}",
                          "diff (pt)": stats.pt(e.diff), "p": paired_p(e), "Holm p": q,
                          "after Holm": "detected" if q < 1 - stats.LEVEL else "not detected"}
                         for e, q in zip(rows, adjusted)],
                        columns=["comparison", "diff (pt)", "p", "Holm p", "after Holm"])


def correction_sentence(table: pd.DataFrame) -> str:
    """Whether a multiple-comparison correction applies, said plainly."""
    if len(table) < 2:
        return ("Multiple comparisons: one comparison with an interval, so no correction is needed (and none "
                "is applied).")
    lost = table[(table["p"] < 1 - stats.LEVEL) & (table["after Holm"] == "not detected")]
    text = (f"Multiple comparisons: {len(table)} comparisons on test accuracy; Holm's correction keeps the "
            f"family-wise error at 5 %. The intervals above are per comparison (uncorrected).")
    if len(lost):
        text += " Detected per comparison but not after Holm: " + ", ".join(lost["comparison"]) + "."
    return text


def epoch_note(frame: pd.DataFrame) -> str:
    """Which epoch the validation and the test figures are, from the runs' early-stopping setting."""
    column = "trainer.early_stopping_patience"
    restored = column in frame and frame[column].notna().any() and (
        pd.to_numeric(frame[column], errors="coerce").fillna(0) > 0).any()
    test = ("the restored best epoch's weights where early stopping stopped the run (trainer.early_stopping_"
            "patience), else the last epoch's" if restored else "the last epoch's weights (no early stopping)")
    return (f"Which epoch: validation accuracy (best_val_accuracy) is the best epoch's (best_epoch); test "
            f"accuracy is measured once, on {test}. They are not the same epoch's figures.")


def bn_warmup(frame: pd.DataFrame, history: pd.DataFrame) -> Optional[str]:
    """The caveat when batch norm's running statistics may not have settled (rule: module constants), or None.

    ``frame``: runs (run_id, model.bn_placement, epochs_completed or trainer.epochs); ``history``: long
    per-epoch values (run_id, metric, step, value) with ``accuracy`` and ``val_accuracy`` at step 0."""
    if frame.empty or history.empty:
        return None
    epochs = frame.get("epochs_completed", frame.get("trainer.epochs"))
    if epochs is None or pd.to_numeric(epochs, errors="coerce").max() > SHORT_EPOCHS:
        return None
    bn = frame[frame.get("model.bn_placement", pd.Series("after", index=frame.index)).astype(str) != "none"]
    first = history[(history["step"] == 0) & history["run_id"].isin(bn["run_id"])]
    wide = first.pivot_table(index="run_id", columns="metric", values="value")
    if wide.empty or not {"accuracy", "val_accuracy"} <= set(wide.columns):
        return None
    gap = (wide["accuracy"] - wide["val_accuracy"]).dropna()
    if gap.empty or (gap > GAP).mean() < SHARE:
        return None
    return (f"Caveat (batch norm warm-up): in {int((gap > GAP).sum())} of {len(gap)} runs with batch norm, "
            f"validation accuracy at epoch 1 is more than {GAP * 100:.0f} pt below training accuracy (up to "
            f"{gap.max() * 100:.0f} pt): the running mean and variance used for validation had not settled. "
            f"In a comparison of {int(pd.to_numeric(epochs, errors='coerce').max())} epoch(s) the effects "
            f"partly measure that warm-up; train longer (trainer.epochs >= 10) before trusting them.")
