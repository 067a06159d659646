"""analysis.racing on constructed learning curves with known answers: the false-stop rate of equal arms,
the worse arm stopped at the first rung, and the measured risk of curves that cross."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from fashion_lab.analysis import racing

EPOCHS = (3, 9, 25)
BASE = [0.85, 0.88, 0.90]   # a learning curve's mean at the rungs
RACES = 2000


def curves(rng, means, seeds: int, persistent: float = 0.004, fresh: float = 0.003) -> np.ndarray:
    """arms x seeds x rungs: each arm's mean curve, plus a per-run offset that persists across the rungs
    (the seed's luck in this arm) and fresh noise per rung: about 0.5 pt of seed spread in all."""
    means = np.asarray(means, dtype=float)
    arms = means.shape[0]
    return (means[:, None, :] + rng.normal(0, persistent, (arms, seeds, 1))
            + rng.normal(0, fresh, (arms, seeds, len(EPOCHS))))


def margin(p: float, n: int) -> float:
    """Three Monte-Carlo standard errors of a rate p measured on n trials."""
    return 3 * math.sqrt(p * (1 - p) / n)


def naive_stops(c: np.ndarray, alpha: float = racing.ALPHA) -> int:
    """The rule without the split and against the observed best only: what selection bias does."""
    alive, count = list(range(c.shape[0])), 0
    for r in range(len(EPOCHS) - 1):
        x, out = c[alive, :, r], []
        for i, a in enumerate(alive if len(alive) > 1 else []):
            best = max((j for j in range(len(alive)) if j != i), key=lambda j: x[j].mean())
            d = x[i] - x[best]
            if d.mean() + st.t.ppf(1 - alpha, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d)) < 0:
                out.append(a)
        count += len(out)
        alive = [a for a in alive if a not in out]
    return count


def test_the_bound_by_hand():
    # b - a = -5, -4, -6 pt: mean -5 pt, sd 1 pt, n 3; 2 arms, 2 decision rungs: level 0.05 / 2 = 0.025
    # U = -0.05 + t[0.975, 2] * 0.01 / sqrt(3) = -0.05 + 4.3027 * 0.005774 = -0.02516
    scores = pd.DataFrame({"a": [0.90, 0.91, 0.92], "b": [0.85, 0.87, 0.86]}, index=[1, 2, 3])
    [stop] = racing.stops(scores, rung=1, epoch=3, arms=2, decisions=2)
    assert (stop.arm, stop.versus, stop.n, stop.rung, stop.epoch) == ("b", "a", 3, 1, 3)
    assert stop.level == pytest.approx(0.025)
    assert stop.diff == pytest.approx(-0.05) and stop.bound == pytest.approx(-0.02516, abs=1e-5)
    assert stop.evidence() == "-5.0 pt vs a on 3 matched seeds (upper 97.50 % bound -2.5 pt)"
    # lower is better (a loss): the same numbers negated stop the same arm
    [loss] = racing.stops(-scores, rung=1, epoch=3, arms=2, decisions=2, higher_is_better=False)
    assert loss.arm == "b" and loss.bound == pytest.approx(stop.bound)


def test_fewer_than_two_matched_seeds_stop_nothing():
    huge = pd.DataFrame({"a": [0.90, np.nan, 0.91], "b": [np.nan, 0.10, 0.11]})  # one seed in common
    assert racing.stops(huge, rung=1, epoch=3, arms=2, decisions=2) == []
    assert racing.stops(huge.iloc[:1], rung=1, epoch=3, arms=2, decisions=2) == []
    assert racing.replay(np.full((2, 1, 3), 0.5) + np.array([0, -0.5])[:, None, None], EPOCHS) == {}


def test_equal_arms_are_stopped_in_at_most_alpha_of_races():
    rng, arms, seeds = np.random.default_rng(0), 3, 3
    stopped = any_stopped = naive = 0
    for _ in range(RACES):
        c = curves(rng, [BASE] * arms, seeds)
        found = racing.replay(c, EPOCHS)
        stopped, any_stopped = stopped + len(found), any_stopped + bool(found)
        naive += naive_stops(c)
    trials = RACES * arms
    # measured (numpy seed 0): 0.0437 of arm-races; some arm in 0.126 of races (bound arms * alpha = 0.15)
    assert stopped / trials <= racing.ALPHA + margin(racing.ALPHA, trials)
    assert any_stopped / RACES <= arms * racing.ALPHA + margin(arms * racing.ALPHA, RACES)
    # selection bias: versus the observed best at alpha per rung stops 0.138 of equal arms, not <= 0.05
    assert naive / trials > 2 * racing.ALPHA


def test_a_clearly_worse_arm_is_stopped_at_the_first_rung():
    # 5 pt worse at every rung, 0.5 pt seed spread, 3 seeds, beside two equal good arms
    rng, first = np.random.default_rng(1), 0
    worse = [m - 0.05 for m in BASE]
    for _ in range(RACES // 4):
        found = racing.replay(curves(rng, [BASE, BASE, worse], 3), EPOCHS)
        first += found.get(2) == 0
    assert first / (RACES // 4) >= 0.95   # measured: 0.998 over 2000 races


def test_crossing_curves_the_measured_risk():
    # dropout: 1.5 pt behind at epoch 3, 0.3 pt behind at 9, 0.5 pt ahead at 25 (the full budget). The rule
    # is right at epoch 3 (it is worse there) and wrong for the question: it stops the final winner in
    # about half the races with 3 seeds, and more often with more seeds (more power at the early rung).
    base, dropout = np.array(BASE), np.array(BASE) + [-0.015, -0.003, 0.005]
    measured = {3: 0.53, 5: 0.93}   # numpy seed 2, 2000 races (docs/sweeps.md states them)
    for seeds, rate in measured.items():
        rng = np.random.default_rng(2)
        lost = sum(1 in racing.replay(curves(rng, [base, dropout], seeds), EPOCHS) for _ in range(RACES))
        assert lost / RACES == pytest.approx(rate, abs=margin(rate, RACES) + 0.005)
        assert lost / RACES > racing.ALPHA  # the guarantee does not cover curves that cross


def test_rungs_and_the_epochs_saved():
    assert racing.rung_epochs(25) == [3, 9, 25]
    assert racing.rung_epochs(10) == [3, 9, 10] and racing.rung_epochs(3) == [3]
    assert racing.rung_epochs(2, [1, 2, 5]) == [1, 2]
    # 2 arms x 3 seeds, one stopped at epoch 3, the other at 25: (3 * 3 + 3 * 25) / (6 * 25) = 0.56
    assert racing.epochs_share([3, 3, 3, 25, 25, 25], 25) == pytest.approx(0.56)
    assert racing.comparison_level(6, 2) == pytest.approx(0.005)


# --- the record of a race (fashion_lab.analysis.race_record) and its checks ---------------------------------

def test_preflight_refuses_bad_rungs_in_one_line_naming_the_key():
    from fashion_lab.config import ConfigError
    from fashion_lab.preflight import check_race

    check_race(True, [3, 9, 25], until_sure=False)
    for bad in ([], [9, 3], [0, 2], [3, 3]):
        with pytest.raises(ConfigError, match=r"^sweep\.rungs=") as error:
            check_race(True, bad, until_sure=False)
        assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"^sweep\.race=True is not allowed: not with sweep\.until_sure"):
        check_race(True, [3], until_sure=True)


def _child(lr: str, seed: int, epochs: int, tags: dict) -> dict:
    return {"overrides": [f"optimizer.learning_rate={lr}", f"trainer.seed={seed}", f"trainer.epochs={epochs}"],
            "metrics": {"epochs_completed": float(epochs)}, "tags": tags, "status": "FINISHED"}


def test_the_race_lines_name_the_stopped_arm_and_the_epochs_saved():
    from fashion_lab.analysis import race_record as race

    stop = racing.Stop("learning_rate=1e-07", 1, 3, "learning_rate=0.01", -0.8, -0.7, 3, 0.025)
    children = [_child("1e-07", s, 3, {**race.rung_tags(1, 2, 3), **race.stop_tags(stop)}) for s in range(3)]
    children += [_child("0.01", s, e, race.rung_tags(r, 2, e)) for s in range(3) for r, e in ((1, 3), (2, 25))]
    keys = ["optimizer.learning_rate", "trainer.seed"]
    lines = race.race_lines(children, keys, 25)
    assert any(line.startswith("  stopped: learning_rate=1e-07 at rung 1 (epoch 3): -80.0 pt vs learning_rate=0.01")
               and "no full-budget effect" in line for line in lines), lines
    # 3 seeds stopped at epoch 3, 3 continued to 25: (9 + 75) / 150 = 56 %
    assert any("epochs trained: 84 of the full grid's 150 (56%)" in line for line in lines), lines
    # the answer uses the last rung only: never a stopped arm, never a survivor's earlier rung
    full = [c for c in children if race.full_budget(c["tags"])]
    assert len(full) == 3 and all(c["metrics"]["epochs_completed"] == 25 for c in full)
    assert race.full_budget({}) and race.race_lines([_child("0.01", 0, 25, {})], keys, 25) is None
    assert race.of({"fashion_lab.race.rung": "1", "fashion_lab.seed": "0"}) == {"race.rung": "1"}
