"""What a planned design can detect, before it runs: power, the minimum detectable difference, the seeds
a target effect needs, and the seed spread they rest on, read from comparable finished runs.

The test is the one the answer uses: a paired t test on the matched differences (5 % two-sided). The
minimum detectable difference (MDD) at power 1 - beta uses the usual t approximation

    MDD = (t[1 - alpha/2, n - 1] + t[1 - beta, n - 1]) * sd / sqrt(n)

(stats.detectable_difference, the same formula the answer states after a sweep); ``power`` is the exact
power of the paired t test at a true difference ``delta`` (non-central t with n - 1 df). The spread is the
standard deviation of the matched differences (two runs that differ only in one setting, same seed).

Pure pandas/scipy: tests feed it constructed numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import pandas as pd
from scipy import stats as st

from fashion_lab.analysis import stats

ALPHA = 1 - stats.LEVEL
POWER = stats.POWER


def power(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of a two-sided paired t test on ``n`` pairs when the true mean difference is ``delta``."""
    if n < 2 or not sd > 0:
        return math.nan
    df = n - 1
    crit = float(st.t.ppf(1 - alpha / 2, df))
    shift = abs(delta) * math.sqrt(n) / sd
    upper, lower = float(st.nct.sf(crit, df, shift)), float(st.nct.cdf(-crit, df, shift))
    if upper != upper:  # scipy's non-central t gives NaN far in the tail: the normal limit there
        upper = float(st.norm.sf(crit - shift))
    return min(1.0, upper + (0.0 if lower != lower else lower))


def mdd(sd: float, n: int) -> float:
    """Minimum detectable difference at 80 % power, 5 % two-sided, for ``n`` pairs with spread ``sd``."""
    return stats.detectable_difference(sd, n)


def seeds_needed(sd: float, effect: float, pairs_per_seed: int = 1) -> Optional[int]:
    """Seeds per level that give 80 % power for ``effect``: pairs needed over the pairs each seed adds
    (the other swept factors' combinations). None where the spread is unknown or beyond 100,000 pairs."""
    pairs = stats.pairs_needed(sd, effect)
    return None if pairs is None else max(2, math.ceil(pairs / max(1, pairs_per_seed)))


@dataclass
class Spread:
    """The SD of matched differences: its estimate, degrees of freedom, and where it came from."""
    sd: float
    df: int
    pairs: int
    comparisons: int
    source: str

    @property
    def known(self) -> bool:
        return self.df >= 1 and self.sd > 0

    def interval(self) -> tuple[float, float]:
        """95 % chi-square interval of the true SD (df degrees of freedom)."""
        return stats.sd_interval(self.sd, self.df + 1) if self.known else (math.nan, math.nan)


UNKNOWN = Spread(math.nan, 0, 0, 0, "no comparable finished runs")


def matched_spread(frame: pd.DataFrame, metric: str = "test_accuracy", group: str = "sweep_id",
                   config: str = "config_id", seed: str = "seed") -> Spread:
    """Pooled SD of matched differences: within each ``group`` (a sweep), every two configurations that
    ran the same seeds give one difference per shared seed; each pair of configurations keeps its own mean
    difference (the effect), and the residuals pool over all of them (sum of squares / sum of (k - 1) df).
    Every pair is compared with the group's first configuration, so no difference is counted twice."""
    need = [group, config, seed, metric]
    if frame.empty or any(c not in frame for c in need):
        return UNKNOWN
    rows = frame.dropna(subset=need)
    squares, df, pairs, comparisons = 0.0, 0, 0, 0
    for _, runs in rows.groupby(rows[group].astype(str)):
        table = runs.groupby([runs[seed].astype(str), runs[config].astype(str)])[metric].mean().unstack(config)
        if table.shape[1] < 2:
            continue
        base = table.columns[0]
        for other in table.columns[1:]:
            d = (table[other] - table[base]).dropna().to_numpy(dtype=float)
            if len(d) >= 2:
                squares += float(((d - d.mean()) ** 2).sum())
                df += len(d) - 1
                pairs += len(d)
                comparisons += 1
    if df == 0:
        return UNKNOWN
    return Spread(math.sqrt(squares / df), df, pairs, comparisons,
                  f"{pairs} matched pairs in {comparisons} comparison(s) of finished runs")


def repeat_spread(frame: pd.DataFrame, metric: str = "test_accuracy", config: str = "config_id") -> Spread:
    """Where no comparison was matched: the seed-to-seed SD of repeats of one configuration, times sqrt(2),
    the SD of the difference of two independent runs (an upper estimate: matching usually cancels some)."""
    if frame.empty or config not in frame or metric not in frame:
        return UNKNOWN
    rows = frame.dropna(subset=[config, metric])
    squares, df, runs = 0.0, 0, 0
    for _, group in rows.groupby(rows[config].astype(str)):
        values = group[metric].to_numpy(dtype=float)
        if len(values) >= 2:
            squares += float(((values - values.mean()) ** 2).sum())
            df += len(values) - 1
            runs += len(values)
    if df == 0:
        return UNKNOWN
    return Spread(math.sqrt(2 * squares / df), df, 0, 0,
                  f"sqrt(2) x the seed-to-seed SD of {runs} repeated runs (no matched pairs; an upper estimate)")


def spread(frame: pd.DataFrame, metric: str = "test_accuracy") -> Spread:
    """The matched spread where the runs hold matched pairs, else the repeats' (x sqrt 2), else UNKNOWN."""
    found = matched_spread(frame, metric)
    return found if found.known else repeat_spread(frame, metric)


@dataclass
class Sensitivity:
    """One planned comparison: its pairs, what they can detect, and the seeds a target needs."""
    factor: str
    pairs: int
    pairs_per_seed: int
    mdd: float
    seeds_for_target: Optional[int]
    seeds_range: tuple[Optional[int], Optional[int]]


def plan_sensitivity(factor: str, seeds: int, pairs_per_seed: int, found: Spread,
                     target: float = 0.005) -> Sensitivity:
    """What ``seeds`` seeds per level give a comparison with ``pairs_per_seed`` matched cells per seed."""
    pairs = seeds * max(1, pairs_per_seed)
    if not found.known:
        return Sensitivity(factor, pairs, pairs_per_seed, math.nan, None, (None, None))
    low, high = found.interval()
    return Sensitivity(factor, pairs, pairs_per_seed, mdd(found.sd, pairs),
                       seeds_needed(found.sd, target, pairs_per_seed),
                       (seeds_needed(low, target, pairs_per_seed), seeds_needed(high, target, pairs_per_seed)))


def normal_mdd(sd: float, n: int, power_level: float = POWER, alpha: float = ALPHA) -> float:
    """The large-sample (normal) MDD, (z[1 - alpha/2] + z[power]) * sd / sqrt(n): the t formula's limit."""
    return (float(st.norm.ppf(1 - alpha / 2)) + float(st.norm.ppf(power_level))) * sd / math.sqrt(n)

