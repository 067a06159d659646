"""The answers a sweep's numbers give: which level is the reference, which cells are still undecided.

Pure pandas and the design-aware statistics of analysis.stats; shared by the report and the
until_sure sweeper, which decides from them where to add seeds.
"""

from __future__ import annotations

from typing import List

import pandas as pd

from fashion_lab.analysis import stats
from fashion_lab.config.keys import typed


def base_level(frame: pd.DataFrame, key: str, defaults: dict):
    """The tutorial's value of ``key`` if the sweep has it, else the first level."""
    levels = sorted(frame[key].dropna().unique(), key=str)
    default = defaults.get(key, defaults.get(f"{key}.name"))  # a group choice (optimizer) is its .name
    for level in levels:
        if default is not None and str(level) == str(typed(str(default))):
            return level
        if default is not None and isinstance(level, (int, float)) and isinstance(default, (int, float)) \
                and float(level) == float(default):
            return level
    return levels[0] if levels else None


def undecided_cells(rows: List[dict], keys: List[str], references: dict, metric: str) -> set:
    """Cells (tuples of the swept values, as text) that belong to a comparison whose interval spans 0."""
    frame = pd.DataFrame(rows)
    if frame.empty or metric not in frame:
        return set()
    cells = set()
    for effect in stats.effects(frame, keys, references, [metric]):
        if effect.verdict in ("detected", "confounded"):
            continue
        pair = {str(effect.level), str(effect.reference)}
        for values in frame[keys].astype(str).drop_duplicates().itertuples(index=False):
            if str(values[keys.index(effect.factor)]) in pair:
                cells.add(tuple(values))
    return cells
