"""Where a search starts: the base configuration clipped into the space, then ``sweep.initial_points``.

``tuner.warm_start`` (default true) makes the base configuration (the command's overrides over the
tutorial defaults) a search's first trial: for each entry of the space, the base config's value when
it is one of the choices or inside the interval, else the nearest allowed value (the nearest number
of a numeric choice or the interval's nearer end; the first choice of a text choice the base does
not name). ``sweep.initial_points`` (a list of ``{key: value}`` maps in a sweep file) come next,
each the base point with its listed keys replaced; a value outside the space is refused, not clipped.
Every backend runs these points once: a point a trial of the search already has is not run again.
"""

from __future__ import annotations

import enum
from typing import Any, Iterable

from omegaconf import DictConfig, ListConfig, OmegaConf

from fashion_lab.search.space import Dimension, SpaceError, _text


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_value(cfg: DictConfig, key: str) -> Any:
    """The base config's value of a space entry (a config group: its ``name``), as plain data."""
    node = OmegaConf.select(cfg, key)
    if isinstance(node, DictConfig) and "name" in node:
        node = node.name
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=True)
    return node.value if isinstance(node, enum.Enum) else node


def _choice(d: Dimension, value: Any):
    """The choice that is ``value`` (numbers by value, others by their override text), or None."""
    for choice in d.choices:
        if _number(choice) and _number(value) and float(choice) == float(value):
            return choice
        if not _number(choice) and _text(value) == choice:
            return choice
    return None


def clip(d: Dimension, value: Any):
    """``value`` if the entry allows it, else the nearest allowed value."""
    if d.kind == "choice":
        found = _choice(d, value)
        if found is not None:
            return found
        if _number(value) and all(_number(c) for c in d.choices):
            return min(d.choices, key=lambda c: abs(float(c) - float(value)))
        return d.choices[0]
    number = float(value) if _number(value) else float(d.low)
    number = min(max(number, float(d.low)), float(d.high))
    return int(round(number)) if d.kind == "int" else number


def _allowed(d: Dimension, value: Any, where: str):
    """``value`` as the entry's own value; a value outside the space is refused, naming what is allowed."""
    if d.kind == "choice":
        found = _choice(d, value)
        if found is None:
            raise SpaceError(f"{where}={_text(value)} is not allowed: one of {', '.join(map(_text, d.choices))}")
        return found
    if not _number(value) or not float(d.low) <= float(value) <= float(d.high) or (
            d.kind == "int" and float(value) != int(value)):
        raise SpaceError(f"{where}={_text(value)} is not allowed: {'an integer' if d.kind == 'int' else 'a number'} "
                         f"from {d.low} to {d.high}")
    return int(value) if d.kind == "int" else float(value)


def active(dims: list[Dimension], values: dict) -> dict:
    """Only the entries active under ``values`` (an entry whose condition does not hold is dropped)."""
    point: dict = {}
    for d in dims:  # parents come before their dependants
        if d.parent is None or (d.parent in point and point[d.parent] in d.parent_values):
            point[d.key] = values[d.key]
    return point


def base_point(cfg: DictConfig, dims: list[Dimension]) -> dict:
    """The base configuration clipped into the space: the values of its active entries."""
    return active(dims, {d.key: clip(d, config_value(cfg, d.key)) for d in dims})


def start_points(cfg: DictConfig, dims: list[Dimension], space_keys: Iterable[str]) -> list[dict]:
    """The points a search runs first: the base (with tuner.warm_start) then sweep.initial_points.

    ``space_keys`` are every entry of the sweep file's space, the ones the command line pins included:
    a point naming a pinned key keeps the pinned value; a key outside the space is refused."""
    by_key, known = {d.key: d for d in dims}, list(space_keys)
    base = {d.key: clip(d, config_value(cfg, d.key)) for d in dims}
    points = [active(dims, base)] if cfg.tuner.warm_start else []
    given = OmegaConf.to_container(cfg.sweep.initial_points, resolve=True) if cfg.sweep.get("initial_points") else []
    for i, raw in enumerate(given):
        if not isinstance(raw, dict) or not raw:
            raise SpaceError(f"sweep.initial_points[{i}]={raw!r} is not allowed: a map of space entries to values, "
                             f"e.g. {{{known[0]}: ...}}")
        values = dict(base)
        for key, value in raw.items():
            if key not in known:
                raise SpaceError(f"sweep.initial_points[{i}].{key}: not an entry of the space; entries: "
                                 f"{', '.join(known)}")
            if key in by_key:  # else pinned on the command line: the pinned value stays
                values[key] = _allowed(by_key[key], value, f"sweep.initial_points[{i}].{key}")
        point = active(dims, values)
        if point not in points:
            points.append(point)
    return points
