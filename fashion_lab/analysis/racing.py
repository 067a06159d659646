"""The racing rule: which arms of a grid stop at a rung, on matched seeds, with a stated false-stop rate.

The rule. A race has ``arms`` arms (grid cells), the same seeds in each, and rungs e_1 < ... < e_R epochs;
the last rung is the full budget, so the rule decides at the D = R - 1 rungs before it. At a decision rung,
for every surviving arm a and every other surviving arm b, the matched differences d_s = y_a,s - y_b,s
(the metric at that rung's epoch, higher is better, seeds that both arms ran) give the one-sided paired-t
upper confidence bound

    U(a, b) = mean(d) + t[1 - level, n - 1] * sd(d) / sqrt(n),   level = alpha / ((arms - 1) * D)

and arm a stops when U(a, b) < 0 for some b: it is worse than another arm by more than the seeds' noise
allows. Fewer than 2 matched seeds give no bound and stop nothing. Where sd(d) = 0, U = mean(d).

Its false-stop rate. Take an arm a that is not worse than any other at any decision rung's epoch (an arm
equal to the best counts). It is stopped only if one of its (arms - 1) * D bounds falls below 0 although
its true difference is >= 0; each does so with probability <= level (exact when the differences are
normal and independent across seeds), so by the union bound (valid under any dependence between rungs
and arms) P(a is ever stopped) <= alpha. With every arm equal, the chance that some arm stops is <=
arms * alpha. Holm within an arm's own comparisons would change nothing: "any rejected" is decided by the
smallest p-value, whose Holm threshold is the Bonferroni one.

Selection bias. The rule never picks a "best" arm from the data and tests against it alone: an arm is
compared with every other, each comparison at the split level, so choosing the comparison after seeing
the data costs nothing in the bound (tests/analysis/test_racing.py shows the naive "versus the observed best at
alpha" rule stopping equal arms far more often than alpha).

Its risk. The guarantee is about the rung's epoch. Curves that cross (dropout slower at first, better at
the end) make an arm truly worse at an early rung and better at the full budget: stopping it there is
"right" by the rule and wrong for the question. docs/sweeps.md states the rate measured for such a case.

Pure numpy/pandas/scipy: tests feed it constructed curves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import pandas as pd
from scipy import stats as st

ALPHA = 0.05
RUNGS = (3, 9, 25)  # Hyperband's factor 3 up to the tutorial's 25 epochs


def rung_epochs(epochs: int, rungs: Optional[Sequence[int]] = None) -> list[int]:
    """The rungs for a full budget of ``epochs``: the given ones (default RUNGS) below it, then ``epochs``."""
    given = sorted({int(r) for r in (RUNGS if rungs is None else rungs)})
    return [r for r in given if 0 < r < epochs] + [int(epochs)]


def comparison_level(arms: int, decisions: int, alpha: float = ALPHA) -> float:
    """The one-sided level of each bound: alpha split over an arm's comparisons and the decision rungs."""
    return alpha / (max(1, arms - 1) * max(1, decisions))


def upper_bounds(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For ``values`` (arms x seeds, NaN where a seed is missing): the matrices U[a, b] (the upper bound
    of a - b, NaN under 2 matched seeds), the mean differences and the matched counts."""
    d = values[:, None, :] - values[None, :, :]
    seen = ~np.isnan(d)
    n = seen.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(seen, d, 0.0).sum(axis=-1) / n
        var = np.where(seen, (d - mean[..., None]) ** 2, 0.0).sum(axis=-1) / (n - 1)
        quantile = st.t.ppf(1 - level, np.maximum(n - 1, 1))
        bound = mean + quantile * np.sqrt(var / n)
    bound = np.where(n >= 2, bound, np.nan)
    np.fill_diagonal(bound, np.nan)
    return bound, mean, n


@dataclass(frozen=True)
class Stop:
    """An arm stopped at a rung, and the evidence: the comparison with the lowest upper bound."""
    arm: str
    rung: int        # 1-based
    epoch: int
    versus: str      # the arm it is worse than
    diff: float      # mean matched difference, arm - versus, signed so that negative is worse
    bound: float     # its one-sided upper confidence bound (< 0), signed the same way
    n: int           # matched seeds
    level: float     # the one-sided level of the bound

    def evidence(self) -> str:
        """"-4.9 pt vs adam on 3 matched seeds (upper 99.50 % bound -2.7 pt)"."""
        return (f"{100 * self.diff:+.1f} pt vs {self.versus} on {self.n} matched seeds "
                f"(upper {100 * (1 - self.level):.2f} % bound {100 * self.bound:+.1f} pt)")


def stops(scores: pd.DataFrame, rung: int, epoch: int, arms: int, decisions: int, alpha: float = ALPHA,
          higher_is_better: bool = True) -> list[Stop]:
    """The arms that stop at this rung. ``scores``: one column per surviving arm, one row per seed, the
    metric at ``epoch`` (NaN where missing); ``arms`` and ``decisions`` are the race's, fixed in advance."""
    level = comparison_level(arms, decisions, alpha)
    values = scores.to_numpy(dtype=float) * (1.0 if higher_is_better else -1.0)
    bound, mean, n = upper_bounds(values.T, level)
    names, found = [str(c) for c in scores.columns], []
    for a, name in enumerate(names):
        row = np.where(np.isnan(bound[a]), np.inf, bound[a])
        b = int(np.argmin(row))
        if row[b] < 0:
            found.append(Stop(name, rung, epoch, names[b], float(mean[a, b]), float(bound[a, b]), int(n[a, b]), level))
    return found


def replay(curves: np.ndarray, epochs: Sequence[int], alpha: float = ALPHA) -> dict[int, int]:
    """A whole race on known curves (arms x seeds x rungs, higher is better): {arm: the rung index (0-based)
    it stopped at}; arms absent ran the full budget. The last rung decides nothing."""
    arms, decisions = curves.shape[0], len(epochs) - 1
    level = comparison_level(arms, decisions, alpha)
    alive, stopped = list(range(arms)), {}
    for r in range(decisions):
        bound, _, _ = upper_bounds(curves[alive, :, r], level)
        out = [a for i, a in enumerate(alive) if np.nanmin(np.append(bound[i], np.inf)) < 0]
        stopped.update({a: r for a in out})
        alive = [a for a in alive if a not in out]
    return stopped


def epochs_share(reached: Sequence[int], epochs: int) -> float:
    """Trained epochs over the full grid's: ``reached`` is the last epoch of each arm x seed (a continued
    run trains only the epochs past its rung, so each arm x seed costs the epoch it reached)."""
    return float(sum(reached)) / (len(reached) * epochs) if len(reached) else float("nan")
