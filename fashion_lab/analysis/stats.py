"""Factor effects estimated with the design: paired differences over matched cells, honest intervals.

A grid holds every other swept factor and the seed fixed while one factor changes, so the effect
of a level is read from *matched pairs*: two runs that differ only in that factor. The seed-to-seed
spread and the other factors' effects cancel in each pair instead of swelling the interval. A
search (random, bayesian, hyperband) chooses its points, so its factors cannot be separated this
way: they are reported as confounded (exploratory; see parameter importance), with no estimate.

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
POWER = 0.80
EFFECT_COLUMNS = ["factor", "level", "reference", "metric", "diff", "ci_low", "ci_high", "n", "verdict"]
METHOD = (
    "Method: each effect is the mean of paired differences between runs that differ only in that factor "
    "(every other swept factor and the seed held fixed), so neither the seed-to-seed noise nor the other "
    "factors' effects enter the comparison; this is the same estimate as a linear model with every factor "
    "and the seed for a balanced grid, but it needs no model and drops only the unmatched cells. The 95 % "
    "interval is a t interval on the n paired differences (n - 1 degrees of freedom, wide on purpose at small "
    "n; no bootstrap, which is far too narrow with 3 pairs), clipped to the possible range [-100, +100] pt "
    "(accuracy levels: [0, 1]). An effect is 'detected' when its interval excludes 0. A comparison with a single "
    "pair gets no interval. Interactions are the two-factor contrasts (ab - a - b + reference) within each "
    "seed, with the same interval. Searches choose their points, so their factors are confounded with each "
    "other and get no estimate. The smallest detectable difference is for 80 % power at 5 % two-sided, from "
    "the observed spread of the paired differences.")


def _t_interval(values: np.ndarray, bound: float) -> tuple[float, float]:
    """t interval of the mean of ``values``, clipped to [-bound, bound]."""
    n = len(values)
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n)
    return max(-bound, mean - half), min(bound, mean + half)


def mean_ci(values) -> tuple[float, float, float, float, int]:
    """mean, std (ddof=1), CI low, CI high (t interval clipped to [0, 1]); CI is NaN with fewer than 2 values."""
    v = np.asarray(pd.Series(values).dropna(), dtype=float)
    n = len(v)
    if n == 0:
        return (math.nan,) * 4 + (0,)
    mean = float(v.mean())
    if n < 2:
        return mean, math.nan, math.nan, math.nan, n
    low, high = _t_interval(v, math.inf)
    return mean, float(v.std(ddof=1)), max(0.0, low), min(1.0, high), n


def detectable_difference(sd: float, n: int) -> float:
    """Smallest true mean difference a paired t test on ``n`` pairs detects with 80 % power (5 % two-sided)."""
    if n < 2 or not sd > 0:
        return math.nan
    df = n - 1
    return (float(stats.t.ppf(0.5 + LEVEL / 2, df)) + float(stats.t.ppf(POWER, df))) * sd / math.sqrt(n)


def sd_interval(sd: float, n: int) -> tuple[float, float]:
    """95 % chi-square interval of the true SD behind ``sd``, estimated from ``n`` values (n - 1 df).
    With 3 pairs (2 df) it spans about 0.52x to 6.3x the estimate: the spread itself is barely known."""
    if n < 2 or not sd > 0:
        return math.nan, math.nan
    df = n - 1
    return (sd * math.sqrt(df / float(stats.chi2.ppf(0.5 + LEVEL / 2, df))),
            sd * math.sqrt(df / float(stats.chi2.ppf(0.5 - LEVEL / 2, df))))


def pairs_needed(sd: float, effect: float, limit: int = 100_000) -> Optional[int]:
    """Pairs a paired t test needs to detect ``effect`` (80 % power, 5 % two-sided), or None if unknown."""
    if not sd > 0 or not effect > 0:
        return None
    if detectable_difference(sd, limit) > effect:
        return None
    low, high = 2, 2
    while detectable_difference(sd, high) > effect:  # doubling, then bisection
        low, high = high + 1, high * 2
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if detectable_difference(sd, mid) <= effect else (mid + 1, high)
    return high


@dataclass
class Effect:
    """One level of a factor against the reference level, on one metric."""
    factor: str
    level: object
    reference: object
    metric: str
    diff: float = math.nan
    low: float = math.nan       # NaN when no interval can be given
    high: float = math.nan
    n: int = 0                  # matched pairs
    reason: str = ""            # why there is no estimate / no interval
    sd: float = math.nan        # spread of the paired differences
    pairs_per_seed: int = 1     # matched cells per seed (other factors' combinations)
    confounded: bool = False

    @property
    def has_ci(self) -> bool:
        return not math.isnan(self.low)

    @property
    def detected(self) -> bool:
        return self.has_ci and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        if self.confounded:
            return "confounded"
        if not self.has_ci:
            return "no confidence" if self.n else "no data"
        return "detected" if self.detected else "undetected"

    @property
    def sd_low(self) -> float:
        return sd_interval(self.sd, self.n)[0]

    @property
    def sd_high(self) -> float:
        return sd_interval(self.sd, self.n)[1]

    @property
    def detectable(self) -> float:
        return detectable_difference(self.sd, self.n)

    def seeds_for(self, effect: float) -> Optional[int]:
        """Seeds per level that would detect ``effect`` with this spread (pairs / pairs per seed)."""
        return self._seeds(self.sd, effect)

    def seeds_range(self, effect: float) -> tuple[Optional[int], Optional[int]]:
        """Seeds per level for ``effect`` at both ends of the SD's 95 % interval (None: beyond 100,000 pairs)."""
        low, high = sd_interval(self.sd, self.n)
        return self._seeds(low, effect), self._seeds(high, effect)

    def _seeds(self, sd: float, effect: float) -> Optional[int]:
        pairs = pairs_needed(sd, effect)
        return None if pairs is None else max(2, math.ceil(pairs / max(1, self.pairs_per_seed)))

    def row(self) -> dict:
        return dict(zip(EFFECT_COLUMNS, (self.factor, self.level, self.reference, self.metric, self.diff,
                                         self.low, self.high, self.n, self.verdict)))


def seed_column(frame: pd.DataFrame) -> Optional[str]:
    """The column that identifies a run's seed: the ``seed`` tag, else the ``trainer.seed`` param."""
    for column in ("seed", "trainer.seed"):
        if column in frame and frame[column].notna().any():
            return column
    return None


def _cells(frame: pd.DataFrame, by: list[str], column: str, metric: str) -> pd.DataFrame:
    """Mean ``metric`` per (by..., column) cell, pivoted: one row per block, one column per level.

    Repeated runs of one cell (a resumed sweep) are averaged, so they count once."""
    keyed = frame[by + [column, metric]].copy()
    for c in by + [column]:  # NaN/None params are levels too ("None" = not set)
        keyed[c] = keyed[c].astype(str)
    if not by:
        keyed["_all"] = "all"
        by = ["_all"]
    return keyed.groupby(by + [column])[metric].mean().unstack(column)


def paired_effect(frame: pd.DataFrame, factor: str, level, reference, metric: str, others: list[str],
                  seed: Optional[str]) -> Effect:
    """``level`` minus ``reference`` over the cells where both ran with the other factors and the seed equal."""
    effect = Effect(factor, level, reference, metric)
    if metric not in frame:
        effect.reason = f"no {metric} recorded"
        return effect
    blocks = others + ([seed] if seed else [])
    table = _cells(frame[frame[metric].notna()], blocks, factor, metric)
    if str(level) not in table or str(reference) not in table:
        effect.reason = f"no finished run at {level} or at {reference}"
        return effect
    diffs = (table[str(level)] - table[str(reference)]).dropna().to_numpy(dtype=float)
    effect.n = len(diffs)
    if effect.n == 0:
        effect.confounded = True
        effect.reason = (f"no run at {level} has a run at {reference} with the other factors and the seed equal "
                         f"(unbalanced or missing cells)")
        return effect
    effect.diff = float(diffs.mean())
    if others:
        combos = frame[others].astype(str).drop_duplicates()
        effect.pairs_per_seed = len(combos)
    if effect.n < 2:
        effect.reason = "a single matched pair: no confidence can be given"
        return effect
    effect.sd = float(diffs.std(ddof=1))
    effect.low, effect.high = _t_interval(diffs, 1.0) if effect.sd > 0 else (effect.diff, effect.diff)
    return effect


def levels_of(frame: pd.DataFrame, factor: str) -> list:
    return sorted(frame[factor].dropna().unique(), key=lambda v: (not isinstance(v, (int, float)), v if isinstance(
        v, (int, float)) else str(v)))


def effects(frame: pd.DataFrame, factors: list[str], references: dict, metrics: list[str],
            strategy: str = "grid") -> list[Effect]:
    """Every non-reference level of every factor against its reference, on every metric."""
    seed = seed_column(frame)
    out = []
    for factor in factors:
        others = [f for f in factors if f != factor]
        for level in levels_of(frame, factor):
            if str(level) == str(references[factor]):
                continue
            for metric in metrics:
                if strategy != "grid":
                    out.append(Effect(factor, level, references[factor], metric, confounded=True, reason=(
                        f"the levels were chosen by a {strategy} search, so the other factors change with this "
                        f"one; exploratory only (parameter importance), not an effect")))
                else:
                    out.append(paired_effect(frame, factor, level, references[factor], metric, others, seed))
    return out


def effects_frame(found: list[Effect]) -> pd.DataFrame:
    """The tidy effects.csv table."""
    return pd.DataFrame([e.row() for e in found], columns=EFFECT_COLUMNS)


@dataclass
class Interaction:
    factors: tuple[str, str]
    levels: tuple
    references: tuple
    metric: str
    diff: float = math.nan
    low: float = math.nan
    high: float = math.nan
    n: int = 0

    @property
    def detected(self) -> bool:
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)


def interactions(frame: pd.DataFrame, factors: list[str], references: dict, metric: str) -> list[Interaction]:
    """(a, b) - (a, ref_b) - (ref_a, b) + (ref_a, ref_b) within each seed and the other factors' cell."""
    if metric not in frame or len(factors) < 2:
        return []
    seed = seed_column(frame)
    out = []
    for i, a in enumerate(factors):
        for b in factors[i + 1:]:
            blocks = [f for f in factors if f not in (a, b)] + ([seed] if seed else [])
            keyed = frame[frame[metric].notna()].copy()
            keyed["_ab"] = keyed[a].astype(str) + "\x00" + keyed[b].astype(str)
            table = _cells(keyed, blocks, "_ab", metric)
            ra, rb = str(references[a]), str(references[b])
            for la in levels_of(frame, a):
                for lb in levels_of(frame, b):
                    if str(la) == ra or str(lb) == rb:
                        continue
                    names = [f"{x}\x00{y}" for x, y in ((la, lb), (la, rb), (ra, lb), (ra, rb))]
                    effect = Interaction((a, b), (la, lb), (references[a], references[b]), metric)
                    if all(n in table for n in names):
                        c = (table[names[0]] - table[names[1]] - table[names[2]] + table[names[3]]).dropna()
                        values = c.to_numpy(dtype=float)
                        effect.n = len(values)
                        if effect.n:
                            effect.diff = float(values.mean())
                        if effect.n >= 2:
                            sd = float(values.std(ddof=1))
                            effect.low, effect.high = _t_interval(values, 2.0) if sd > 0 else (effect.diff,) * 2
                    out.append(effect)
    return out


def welch_difference(values, base) -> "Difference":
    """mean(values) - mean(base) with a Welch t interval, pooling whatever else varies (for comparison only)."""
    a = np.asarray(pd.Series(values).dropna(), dtype=float)
    b = np.asarray(pd.Series(base).dropna(), dtype=float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Difference(diff, math.nan, math.nan, len(a), len(b))
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return Difference(diff, diff, diff, len(a), len(b))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, df)) * se
    return Difference(diff, diff - half, diff + half, len(a), len(b))


@dataclass
class Difference:
    diff: float
    low: float
    high: float
    n: int
    n_base: int


# --- words ------------------------------------------------------------------------------------

def pt(x: float) -> str:
    """Accuracy difference in percentage points, with a real minus sign."""
    return f"{x * 100:+.1f}".replace("-", "\u2212")


def short(key: str) -> str:
    """'model.conv_dropout' -> 'conv dropout', 'optimizer.name' -> 'optimizer' for sentences."""
    parts = key.split(".")
    word = parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]
    return word.replace("_", " ")


def sentence(e: Effect, metric_label: str) -> str:
    """One sentence that answers "did changing FACTOR to LEVEL help, by how much, how sure?"."""
    what = f"{short(e.factor)} {e.level} (vs {e.reference})"
    if e.confounded:
        return f"{what}: confounded, no estimate of {metric_label}: {e.reason}."
    if math.isnan(e.diff):
        return f"{what}: no {metric_label} to compare ({e.reason})."
    if not e.has_ci:
        return (f"{what} changed {metric_label} by {pt(e.diff)} pt, but no confidence can be given "
                f"({e.n} matched pair; repeat with more seeds).")
    ci = f"95 % CI {pt(e.low)} to {pt(e.high)} pt, {e.n} matched pairs"
    if not e.detected:
        # "no detectable difference" read as "no difference", even at -41.9 pt: say it is not decided
        return f"{what}: undecided on {metric_label}: {pt(e.diff)} pt, {ci}; the interval includes 0."
    return f"{what} changed {metric_label} by {pt(e.diff)} pt ({ci})."


def sensitivity(e: Effect, target: float) -> Optional[str]:
    """What this design could have seen, and what it would take to see ``target``."""
    if e.confounded or not e.has_ci or not e.sd > 0:
        return None
    text = (f"{short(e.factor)} {e.level} vs {e.reference}: with {e.n} pairs and a spread of "
            f"{e.sd * 100:.2f} pt between them, the smallest difference this design could detect is "
            f"\u00b1{e.detectable * 100:.1f} pt (80 % power, 5 % two-sided)")
    seeds = e.seeds_for(target)
    if seeds is not None:
        text += f"; about {seeds} seeds per level to detect \u00b1{target * 100:.1f} pt"
        low, high = e.seeds_range(target)
        text += (f" (anywhere from {count(low)} to {count(high)}: the spread of {e.n} pairs is known only to "
                 f"{e.sd_low * 100:.2f} to {e.sd_high * 100:.2f} pt, 95 % chi-square interval)")
    return text + "."


def count(seeds: Optional[int]) -> str:
    """A seed count for a sentence: 2,054, or "over 100,000" where pairs_needed gave up."""
    return "over 100,000" if seeds is None else f"{seeds:,}"


def interaction_sentence(i: Interaction, metric_label: str) -> str:
    (a, b), (la, lb), (ra, rb) = i.factors, i.levels, i.references
    return (f"{short(a)} {la} and {short(b)} {lb} interact: together they change {metric_label} by "
            f"{pt(i.diff)} pt more than the sum of their separate effects (95 % CI {pt(i.low)} to {pt(i.high)} pt, "
            f"{i.n} seeds; reference {ra} / {rb}).")


# --- descriptive tables --------------------------------------------------------------------------

def level_table(frame: pd.DataFrame, key: str, metrics: list[str]) -> pd.DataFrame:
    """Per level of ``key``: n and mean, std, 95 % CI (clipped to [0, 1]) of each metric, pooled over the rest."""
    rows = []
    for level, group in frame.groupby(key, sort=True, dropna=False):
        row = {key: level}
        for metric in metrics:
            mean, std, low, high, n = mean_ci(group[metric]) if metric in group else (math.nan,) * 4 + (0,)
            row.update({"n": n, f"{metric} mean": mean, f"{metric} std": std,
                        f"{metric} CI low": low, f"{metric} CI high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def interaction_table(frame: pd.DataFrame, keys: list[str], metric: str) -> Optional[pd.DataFrame]:
    """Mean ± std (n) of ``metric`` for every combination of two factors: rows ``a``, one column per ``b`` level."""
    if len(keys) != 2 or metric not in frame:
        return None
    a, b = keys
    rows = []
    for la in levels_of(frame, a):
        row = {a: la}
        for lb in levels_of(frame, b):
            values = frame[(frame[a] == la) & (frame[b] == lb)][metric]
            mean, std, _, _, n = mean_ci(values)
            row[f"{short(b)}={lb}"] = ("" if n == 0 else f"{mean:.4f} ± {std:.4f} (n={n})" if n > 1
                                       else f"{mean:.4f} (n=1)")
        rows.append(row)
    return pd.DataFrame(rows)

