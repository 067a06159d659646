"""``tuner.seed_from_store=true``: finished runs already in the store whose configuration lies in the
space seed a new search as completed trials, counted against ``tuner.max_trials``, never trained again.

A run lies in the space when its values of the space's entries are allowed there and the configuration a
trial with those values would train (the search's base overrides, then the values) is the run's own: the
same ``config_id`` (config_hash without the seed). Runs of one configuration (several seeds) are one
seeded trial, scored by their mean objective. Only a new search is seeded: a resumed one holds its seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fashion_lab import config
from fashion_lab.config import config_hash
from fashion_lab.search.space import SpaceError, to_overrides
from fashion_lab.search.start import _allowed, active
from fashion_lab.search.study import merge


@dataclass
class Seed:
    """A configuration of the space the store already trained: its values, mean score and runs."""
    values: dict
    score: float
    run_ids: list


def _values(search, row) -> dict | None:
    """The run's values of the space's active entries, or None when one lies outside the space."""
    raw = {}
    for d in search.dims:
        column = d.key if d.key in row.index else f"{d.key}.name"
        value = row.get(column)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            raw[d.key] = value
    try:  # the active entries first: an inactive one (adam's momentum) may hold any value
        point = active(search.dims, {d.key: raw.get(d.key) for d in search.dims})
        return {d.key: _allowed(d, point[d.key], d.key) for d in search.dims if d.key in point}
    except (SpaceError, TypeError, ValueError):  # a value outside the space, or none for an active entry
        return None


def _score(search, row) -> float:
    from fashion_lab.record import tracking

    if search.cfg.tuner.objective == "val_loss":
        return tracking.min_metric(search.cfg.tracking, row["run_id"], "val_loss")
    return float(row["best_val_accuracy"])


def store_seeds(search) -> list[Seed]:
    """The store's finished runs in the search's space, one Seed per configuration, oldest first."""
    from fashion_lab.record import evidence

    frame = evidence.finished_runs(search.cfg.tracking.uri, search.cfg.tracking.experiment)
    if not len(frame) or "config_id" not in frame:
        return []
    seeds: dict[str, Seed] = {}
    for _, row in frame.sort_values("start_time").iterrows():
        values = _values(search, row)
        if values is None or "best_val_accuracy" not in row or row["best_val_accuracy"] != row["best_val_accuracy"]:
            continue
        trial_cfg = config.compose(merge(search.base, to_overrides(search.dims, values)))
        if config_hash(trial_cfg, with_seed=False) != row["config_id"]:
            continue  # trained with another base (data, model, budget): not this search's point
        seed = seeds.setdefault(row["config_id"], Seed(values, 0.0, []))
        seed.run_ids.append(row["run_id"])
        seed.score += (_score(search, row) - seed.score) / len(seed.run_ids)  # running mean
    return list(seeds.values())
