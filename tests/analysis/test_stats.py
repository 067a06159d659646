"""The statistics on constructed tables with known answers (no training, no store)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from fashion_lab.analysis import answers, stats

METRICS = ["test_accuracy"]


def grid(effects: dict[str, dict], seeds: int, noise: float, rng, base: float = 0.80,
         seed_effect: float = 0.0) -> pd.DataFrame:
    """A full grid: accuracy = base + sum of each factor's level effect + a per-seed shift + noise."""
    keys = list(effects)
    shifts = rng.normal(0, seed_effect, seeds) if seed_effect else np.zeros(seeds)
    rows = []
    for combo in itertools.product(*(effects[k] for k in keys)):
        for seed in range(seeds):
            acc = base + sum(effects[k][level] for k, level in zip(keys, combo)) + shifts[seed] + rng.normal(0, noise)
            rows.append({**dict(zip(keys, combo)), "seed": seed, "test_accuracy": acc})
    return pd.DataFrame(rows)


def only(found, factor, level):
    return next(e for e in found if e.factor == factor and e.level == level)


def test_paired_interval_is_the_t_interval_of_the_matched_differences():
    rng = np.random.default_rng(0)
    frame = grid({"a": {"x": 0.0, "y": 0.02}, "b": {"p": 0.0, "q": -0.1}}, seeds=3, noise=0.005, rng=rng)
    e = only(stats.effects(frame, ["a", "b"], {"a": "x", "b": "p"}, METRICS), "a", "y")
    wide = frame.pivot_table(index=["b", "seed"], columns="a", values="test_accuracy")
    diffs = (wide["y"] - wide["x"]).to_numpy()
    ci = scipy_stats.ttest_1samp(diffs, 0).confidence_interval(0.95)
    assert e.n == 6 and e.diff == pytest.approx(diffs.mean())
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high))
    assert e.verdict == "detected" and e.pairs_per_seed == 2


@pytest.mark.parametrize("seed", range(20))
def test_bounds_stay_in_range(seed):
    """Huge noise, few seeds: a t interval would leave [-1, 1] (differences) and [0, 1] (accuracies)."""
    rng = np.random.default_rng(seed)
    frame = grid({"a": {"x": 0.0, "y": 0.5}}, seeds=2, noise=0.4, rng=rng, base=0.5)
    frame["test_accuracy"] = frame["test_accuracy"].clip(0, 1)
    for e in stats.effects(frame, ["a"], {"a": "x"}, METRICS):
        assert -1 <= e.low <= e.diff <= e.high <= 1
    _, _, low, high, _ = stats.mean_ci(frame["test_accuracy"])
    assert 0 <= low <= high <= 1
    for i in stats.interactions(grid({"a": {"x": 0, "y": 0}, "b": {"p": 0, "q": 0}}, 2, 0.6, rng), ["a", "b"],
                                {"a": "x", "b": "p"}, "test_accuracy"):
        assert -2 <= i.low <= i.high <= 2


def test_design_aware_estimate_is_tighter_than_pooled_when_a_nuisance_factor_varies():
    """Factor a does nothing; b costs 10 pt. Pooling counts b's effect as noise; pairing cancels it."""
    rng = np.random.default_rng(3)
    frame = grid({"a": {"x": 0.0, "y": 0.0}, "b": {"p": 0.0, "q": -0.10}}, seeds=3, noise=0.003, rng=rng,
                 seed_effect=0.01)
    e = only(stats.effects(frame, ["a", "b"], {"a": "x", "b": "p"}, METRICS), "a", "y")
    pooled = stats.welch_difference(frame[frame.a == "y"].test_accuracy, frame[frame.a == "x"].test_accuracy)
    assert e.verdict == "undetected" and e.low < 0 < e.high
    assert (e.high - e.low) * 5 < pooled.high - pooled.low  # far tighter, not just a little
    assert e.detectable < 0.02 and e.seeds_for(0.003) > 3  # small effects need more seeds than the 3 run


def test_a_single_seed_level_gives_no_interval():
    frame = pd.DataFrame({"opt": ["sgd", "adam"], "seed": [0, 0], "test_accuracy": [0.80, 0.90]})
    (e,) = stats.effects(frame, ["opt"], {"opt": "sgd"}, METRICS)
    assert e.n == 1 and e.diff == pytest.approx(0.10) and not e.has_ci and math.isnan(e.low)
    assert e.verdict == "no confidence" and math.isnan(e.detectable)
    assert "no confidence can be given" in stats.sentence(e, "test accuracy")
    assert stats.sensitivity(e, 0.003) is None


def test_a_random_search_factor_is_confounded():
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"lr": rng.choice([0.001, 0.01], 8), "units": rng.choice([64, 128], 8),
                          "seed": 0, "test_accuracy": rng.uniform(0.7, 0.9, 8)})
    found = stats.effects(frame, ["lr", "units"], {"lr": 0.001, "units": 64}, METRICS, strategy="random")
    assert found and all(e.verdict == "confounded" and math.isnan(e.diff) and not e.has_ci for e in found)
    assert "random search" in found[0].reason
    assert "confounded" in stats.sentence(found[0], "test accuracy")


def test_unmatched_cells_are_confounded_in_a_grid():
    """Two factors that always change together cannot be separated."""
    frame = pd.DataFrame({"a": ["x", "y"] * 3, "b": ["p", "q"] * 3, "seed": [0, 0, 1, 1, 2, 2],
                          "test_accuracy": [0.8, 0.9, 0.81, 0.91, 0.79, 0.89]})
    found = stats.effects(frame, ["a", "b"], {"a": "x", "b": "p"}, METRICS)
    assert all(e.verdict == "confounded" and "unbalanced or missing" in e.reason for e in found)


def test_an_interaction_is_found_where_it_exists():
    rng = np.random.default_rng(2)
    frame = grid({"a": {"x": 0.0, "y": 0.0}, "b": {"p": 0.0, "q": 0.0}}, seeds=4, noise=0.002, rng=rng)
    frame.loc[(frame.a == "y") & (frame.b == "q"), "test_accuracy"] += 0.05  # only together
    (i,) = stats.interactions(frame, ["a", "b"], {"a": "x", "b": "p"}, "test_accuracy")
    assert i.detected and i.diff == pytest.approx(0.05, abs=0.01) and i.n == 4


def test_detectable_difference_and_seeds_needed_agree():
    sd = 0.004
    assert stats.detectable_difference(sd, 3) > stats.detectable_difference(sd, 10)
    n = stats.pairs_needed(sd, 0.003)
    assert stats.detectable_difference(sd, n) <= 0.003 < stats.detectable_difference(sd, n - 1)
    # normal approximation: n ~ ((1.96 + 0.84) sd / effect)^2 (+ a little for the t distribution)
    assert ((1.96 + 0.84) * sd / 0.003) ** 2 <= n <= ((1.96 + 0.84) * sd / 0.003) ** 2 + 4


def test_effects_frame_has_the_tidy_columns():
    frame = pd.DataFrame({"a": ["x", "y", "x", "y"], "seed": [0, 0, 1, 1], "test_accuracy": [0.8, 0.82, 0.81, 0.84],
                          "best_val_accuracy": [0.8, 0.8, 0.8, 0.8]})
    table = stats.effects_frame(stats.effects(frame, ["a"], {"a": "x"}, ["test_accuracy", "best_val_accuracy"]))
    assert list(table.columns) == ["factor", "level", "reference", "metric", "diff", "ci_low", "ci_high", "n",
                                   "verdict"]
    assert table["metric"].tolist() == ["test_accuracy", "best_val_accuracy"]
    assert table["diff"].tolist() == pytest.approx([0.025, 0.0]) and table["n"].tolist() == [2, 2]


def test_a_search_best_trial_comes_with_how_sure():
    text = answers.search_caveat(12, 1)
    assert "highest of 12 trials, each one run" in text and "sweep.seeds=3" in text
    assert "the mean of 3 runs" in answers.search_caveat(4, 3)


def test_the_sd_of_three_pairs_has_a_chi_square_interval():
    """2 degrees of freedom: the true SD lies within 0.52x to 6.3x the estimate (95 %): known constants."""
    low, high = stats.sd_interval(0.01, 3)
    assert low == pytest.approx(0.01 * math.sqrt(2 / 7.3778), rel=1e-3)
    assert high == pytest.approx(0.01 * math.sqrt(2 / 0.050636), rel=1e-3)
    assert math.isnan(stats.sd_interval(0.01, 1)[0])


def test_seeds_needed_comes_with_its_range():
    """The issue's case: 3 pairs whose spread asks about 52 seeds for +-0.5 pt; the true figure can be
    anywhere from about 14 to 2,000 (seeds scale with the SD squared: 0.27x to 39x)."""
    frame = pd.DataFrame({"opt": ["sgd"] * 3 + ["adam"] * 3, "seed": [0, 1, 2] * 2,
                          "test_accuracy": [0.80, 0.80, 0.80, 0.80 - 0.0125, 0.80, 0.80 + 0.0125]})
    e = only(stats.effects(frame, ["opt"], {"opt": "sgd"}, METRICS), "opt", "adam")
    assert e.sd == pytest.approx(0.0125) and e.seeds_for(0.005) == 52
    low, high = e.seeds_range(0.005)
    assert 14 <= low <= 17 and 1_800 <= high <= 2_100
    text = stats.sensitivity(e, 0.005)
    assert f"about 52 seeds per level to detect ±0.5 pt (anywhere from {low} to {high:,}" in text


def test_an_undetected_effect_is_undecided_with_its_estimate():
    frame = pd.DataFrame({"opt": ["sgd"] * 3 + ["adam"] * 3, "seed": [0, 1, 2] * 2,
                          "test_accuracy": [0.85, 0.85, 0.85, 0.20, 0.85, 0.70]})
    e = only(stats.effects(frame, ["opt"], {"opt": "sgd"}, METRICS), "opt", "adam")
    text = stats.sentence(e, "test accuracy")
    assert not e.detected and "no detectable difference" not in text
    assert f"undecided on test accuracy: {stats.pt(e.diff)} pt, 95 % CI {stats.pt(e.low)} to" in text
    assert stats.pt(e.diff) == "\u2212" "26.7"
