"""analysis.power and analysis.comparisons against constructed numbers with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats as st

from fashion_lab.analysis import comparisons, power, stats


def test_mdd_is_the_t_formula_and_tends_to_the_normal_one():
    # sd = 1, 10 pairs: (t[.975, 9] + t[.80, 9]) / sqrt(10) = (2.2622 + 0.8834) / 3.1623 = 0.9947
    assert power.mdd(1.0, 10) == pytest.approx(0.9947, abs=1e-4)
    assert power.mdd(0.02, 10) == pytest.approx(0.02 * 0.9947, abs=1e-5)  # scales with sigma
    # large n: (z[.975] + z[.80]) * sd / sqrt(n) = 2.8016 * sd / sqrt(n)
    assert power.normal_mdd(1.0, 10_000) == pytest.approx(0.028016, abs=1e-6)
    assert power.mdd(1.0, 10_000) == pytest.approx(power.normal_mdd(1.0, 10_000), rel=1e-3)
    assert math.isnan(power.mdd(1.0, 1)) and math.isnan(power.mdd(0.0, 5))


def test_power_is_alpha_at_zero_and_about_80_percent_at_the_mdd():
    assert power.power(0.0, 1.0, 10) == pytest.approx(0.05, abs=1e-9)
    assert 0.78 < power.power(power.mdd(1.0, 10), 1.0, 10) < 0.82   # the t approximation is close
    assert power.power(power.mdd(0.01, 200), 0.01, 200) == pytest.approx(0.80, abs=0.005)
    assert power.power(0.05, 0.01, 10) > 0.999


def test_seeds_needed_for_half_a_point_at_one_point_spread():
    # normal approximation: n = (2.8016 * 2)^2 = 31.4 pairs; the t test needs a few more
    pairs = power.seeds_needed(0.01, 0.005)
    assert 32 <= pairs <= 36 and pairs == stats.pairs_needed(0.01, 0.005)
    assert stats.detectable_difference(0.01, pairs) <= 0.005 < stats.detectable_difference(0.01, pairs - 1)
    assert power.seeds_needed(0.01, 0.005, pairs_per_seed=3) == math.ceil(pairs / 3)
    assert power.seeds_needed(math.nan, 0.005) is None


def _runs(sweep: str, base: list[float], effect: float, residuals: list[float]) -> list[dict]:
    rows = []
    for seed, (b, r) in enumerate(zip(base, residuals)):
        rows.append({"sweep_id": sweep, "config_id": "A", "seed": seed, "test_accuracy": b})
        rows.append({"sweep_id": sweep, "config_id": "B", "seed": seed, "test_accuracy": b + effect + r})
    return rows


def test_matched_spread_pools_the_residuals_and_ignores_seed_and_effect():
    # big seed-to-seed swings (0.70 .. 0.90) and different effects per sweep cancel; only residuals count
    rows = _runs("s1", [0.80, 0.85, 0.70, 0.90], 0.03, [0.01, -0.01, 0.02, -0.02])
    rows += _runs("s2", [0.60, 0.75], -0.10, [0.005, -0.005])
    found = power.matched_spread(pd.DataFrame(rows))
    # s1: SS = 0.001, 3 df; s2: SS = 0.00005, 1 df -> sqrt(0.00105 / 4)
    assert found.sd == pytest.approx(math.sqrt(0.00105 / 4))
    assert (found.df, found.pairs, found.comparisons) == (4, 6, 2)
    low, high = found.interval()
    assert low < found.sd < high


def test_repeat_spread_is_sqrt2_times_the_seed_sd_and_unknown_without_repeats():
    frame = pd.DataFrame([{"config_id": "A", "test_accuracy": 0.80}, {"config_id": "A", "test_accuracy": 0.82}])
    assert power.repeat_spread(frame).sd == pytest.approx(math.sqrt(2) * st.tstd([0.80, 0.82]))
    assert power.spread(frame).sd == pytest.approx(0.02)  # no matched pairs: the fallback
    assert not power.spread(pd.DataFrame([{"config_id": "A", "test_accuracy": 0.8}])).known


def test_plan_sensitivity_counts_the_other_factors_cells_as_pairs():
    found = power.Spread(0.01, 10, 11, 1, "constructed")
    s = power.plan_sensitivity("model.bn_placement", seeds=3, pairs_per_seed=2, found=found)
    assert s.pairs == 6 and s.mdd == pytest.approx(stats.detectable_difference(0.01, 6))
    assert s.seeds_for_target == math.ceil(stats.pairs_needed(0.01, 0.005) / 2)
    low, high = s.seeds_range
    assert low <= s.seeds_for_target <= high
    unknown = power.plan_sensitivity("x", 3, 1, power.UNKNOWN)
    assert math.isnan(unknown.mdd) and unknown.seeds_for_target is None


def test_holm_adjusts_known_p_values():
    # sorted 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04, kept monotone: 0.06)
    assert comparisons.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = comparisons.holm([0.5, math.nan, 0.6])
    assert adjusted[0] == pytest.approx(1.0) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(1.0)
    assert comparisons.holm([0.02]) == [0.02]


def _effect(factor: str, diff: float, sd: float, n: int) -> stats.Effect:
    e = stats.Effect(factor, "b", "a", "test_accuracy", diff=diff, n=n, sd=sd)
    half = float(st.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    e.low, e.high = diff - half, diff + half
    return e


def test_paired_p_and_the_holm_table_and_sentence():
    e = _effect("model.x", 0.01, 0.01, 4)                      # t = 2 on 3 df
    assert comparisons.paired_p(e) == pytest.approx(2 * st.t.sf(2.0, 3))
    clear = _effect("model.y", 0.05, 0.01, 4)
    near = _effect("model.z", 0.02, 0.018, 6)                   # p ~ 0.042: detected alone, not after Holm
    table = comparisons.holm_table([e, clear, near])
    assert list(table["after Holm"]) == ["not detected", "detected", "not detected"]
    assert table["Holm p"].tolist() == pytest.approx(comparisons.holm(table["p"].tolist()))
    text = comparisons.correction_sentence(table)
    assert "Holm" in text and "z b vs a" in text
    assert "no correction" in comparisons.correction_sentence(comparisons.holm_table([clear]))


def _history(gaps: dict[str, float]) -> pd.DataFrame:
    rows = []
    for run, gap in gaps.items():
        rows += [(run, "accuracy", 0, 0.79), (run, "val_accuracy", 0, 0.79 - gap), (run, "val_accuracy", 1, 0.8)]
    return pd.DataFrame(rows, columns=["run_id", "metric", "step", "value"])


def test_bn_warmup_caveat_rule_on_constructed_histories():
    runs = pd.DataFrame({"run_id": ["r1", "r2", "r3", "r4"], "model.bn_placement": "after", "epochs_completed": 3})
    # the quickstart's shape: training 0.79 at epoch 1, validation 0.19 to 0.52
    text = comparisons.bn_warmup(runs, _history({"r1": 0.60, "r2": 0.27, "r3": 0.02, "r4": 0.01}))
    assert text and "2 of 4 runs" in text and "60 pt" in text
    five = pd.concat([runs, runs.iloc[:1].assign(run_id="r5")])
    assert comparisons.bn_warmup(five, _history({"r1": 0.15, "r2": 0.02, "r3": 0.02, "r4": 0.0, "r5": 0.0})) is None
    assert comparisons.bn_warmup(runs, _history({"r1": 0.15, "r2": 0.02, "r3": 0.02, "r4": 0.0}))  # 1 in 4
    settled = _history({"r1": 0.05, "r2": 0.02, "r3": 0.02, "r4": 0.01})
    assert comparisons.bn_warmup(runs, settled) is None
    long = runs.assign(epochs_completed=10)
    assert comparisons.bn_warmup(long, _history({"r1": 0.6, "r2": 0.6, "r3": 0.6, "r4": 0.6})) is None
    no_bn = runs.assign(**{"model.bn_placement": "none"})
    assert comparisons.bn_warmup(no_bn, _history({"r1": 0.6, "r2": 0.6, "r3": 0.6, "r4": 0.6})) is None


def test_epoch_note_names_each_figures_epoch():
    plain = comparisons.epoch_note(pd.DataFrame({"trainer.early_stopping_patience": [None, None]}))
    assert "best epoch's" in plain and "last epoch's weights" in plain
    early = comparisons.epoch_note(pd.DataFrame({"trainer.early_stopping_patience": [3, 3]}))
    assert "restored best epoch's weights" in early


def test_the_next_step_never_asks_for_seeds_the_sweep_already_ran():
    """The full-budget bf16 check: 3 pairs, spread 0.2 pt, +0.1 pt undecided. 3 seeds already detect ±1 pt,
    so the next step is the smaller effect (±0.5 pt) and the runs it adds, never "3 seeds, 6 more runs"."""
    from fashion_lab.analysis.answers import next_step

    e = _effect("trainer.precision", 0.001, 0.002, 3)
    assert e.seeds_for(0.01) <= 3 and not e.detected
    b = {"cells": 2, "seeds": [3], "epochs": [25], "train_images": [55000], "runs": 6}
    plan = {"run_seconds": 2000.0, "command": "fashion-lab sweep precision", "until_sure": "sweep.until_sure=true",
            "resumes": True}
    step = next_step([e], b, 0.01, plan)
    need = e.seeds_for(0.005)
    assert step.startswith("Next: these seeds already detect ±1.0 pt, so any difference is smaller; "
                           f"to detect ±0.5 pt: about {need} seeds per level, {2 * (need - 3)} more runs"), step
    assert step.endswith(f"sweep.seeds=3 sweep.max_seeds={need}")
    small = _effect("trainer.precision", 0.001, 0.01, 3)  # a wide spread: the target itself still needs seeds
    assert next_step([small], b, 0.01, plan).startswith(f"Next: to detect ±1.0 pt: about {small.seeds_for(0.01)} ")
