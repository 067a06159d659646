"""The plan of a raced grid (``sweep.race=true sweep.plan=true``): the epochs and time between the least and
the most the race can train, and the rule that decides where in that range it ends.

A race trains every arm x seed to the first rung, then continues only the arms the stopping rule keeps
(fashion_lab.analysis.racing). At least one arm always survives, so the least it trains is every arm to the
first rung plus one arm's seeds to the full budget; the most is the full grid's epochs (nothing stopped).
Which end it lands on is what the race finds out, so the plan states both.
"""

from __future__ import annotations

import re
from pathlib import Path

from fashion_lab.analysis import racing
from fashion_lab.sweeps import grid

CONTINUE_S = 2.0    # a continued rung is a run of its own: read its weights, record it (where not measured)


def rungs(path: Path, overrides: list[str], epochs: int) -> list[int]:
    """The rung epochs the race sweeper will use: ``sweep.rungs`` clipped to ``trainer.epochs``."""
    text = grid.setting(path, overrides, "sweep.rungs", "")
    given = [int(v) for v in re.findall(r"\d+", text)] or None
    return racing.rung_epochs(epochs, given)


def race_epochs(arms: int, seeds: int, epochs: list[int]) -> tuple[int, int]:
    """(least, most) epochs a race of ``arms`` x ``seeds`` trains with rung ``epochs`` (the last is the budget)."""
    full = epochs[-1]
    most = arms * seeds * full
    least = arms * seeds * epochs[0] + seeds * (full - epochs[0])
    return least, most


def race_lines(d, path: Path, overrides: list[str], minutes) -> list[str]:
    """The plan's racing lines for Design ``d`` (sweeps.plan), none unless ``sweep.race=true``; ``minutes``
    formats seconds as the plan does."""
    if grid.setting(path, overrides, "sweep.race", False).lower() != "true":
        return []
    seeds, start_s = d.seeds[0], d.start_s
    per_epoch = {id(c): c.run_s / max(1, c.epochs) for c in d.cells}   # seconds of one epoch of each arm
    budget = max(c.epochs for c in d.cells)
    epochs = rungs(path, overrides, budget)
    arms = len(d.cells)
    least, most = race_epochs(arms, seeds, epochs)
    fastest = min(per_epoch.values())
    # The most: every arm continued through every rung (each continuation a run of its own).
    most_s = seeds * sum(per_epoch[id(c)] * c.epochs for c in d.cells) + CONTINUE_S * arms * seeds * (len(epochs) - 1)
    least_s = seeds * (epochs[0] * sum(per_epoch.values()) + fastest * (budget - epochs[0])
                       + CONTINUE_S * (len(epochs) - 1))
    jobs = min(d.jobs, max(1, arms * seeds))
    level = racing.comparison_level(arms, len(epochs) - 1)
    return [f"Racing (sweep.race=true): rungs at epoch {', '.join(map(str, epochs))}; {least:,} to {most:,} "
            f"epochs in all (the full grid's {most:,} if no arm stops; {least:,} if every arm but one stops "
            f"at the first rung): {100 * least / most:.0f} % to 100 % of the full grid",
            f"  expected wall time: {minutes(start_s + least_s / jobs)} to {minutes(start_s + most_s / jobs)} "
            f"({start_s + least_s / jobs:.0f} to {start_s + most_s / jobs:.0f} s), each continued rung "
            f"{CONTINUE_S:.0f} s assumed to read its weights and record",
            f"  stopping rule: at each rung before the last, an arm stops when another arm beats it on matched "
            f"seeds at the same epoch by more than their noise allows (one-sided paired t bound at level "
            f"{level:.4f}, alpha 0.05 split over {max(1, arms - 1)} comparison(s) x {len(epochs) - 1} rung(s))"
            if len(epochs) > 1 else "  one rung only (sweep.rungs all at or above trainer.epochs): nothing to stop",
            *(["  with 1 seed per arm the rule has no noise to measure and stops nothing: give sweep.seeds=3 or more"]
              if seeds < 2 and len(epochs) > 1 else [])]
