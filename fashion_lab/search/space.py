"""A sweep file's ``hydra.sweeper.params`` as a KerasTuner search space over dotted config keys.

Values use Hydra's override grammar (parsed by Hydra's own OverridesParser), so one file
serves both engines: ``a,b,c`` is a grid axis for Hydra and a Choice for the tuner.
Tuner-only forms: ``interval(a,b)`` (float range), ``int(interval(a,b))`` (int range),
``tag(log, interval(a,b))`` (log sampling). ``sweep.conditions`` makes an entry depend on
a choice: ``{optimizer.momentum: "optimizer=sgd"}``. A sampled trial turns back into
override strings (``optimizer=adam``, ``model.filters=[32,64]``) that Hydra composes.
Importing this module stays cheap (no TensorFlow).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional, Sequence

from omegaconf import DictConfig


class SpaceError(ValueError):
    """The search space is malformed; the message names the entry and what is allowed."""


@dataclass(frozen=True)
class Dimension:
    key: str                          # dotted config key or config group, e.g. optimizer
    kind: str                         # choice | float | int
    choices: tuple = ()               # choice: tuner values (int, float or override text)
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    parent: Optional[str] = None      # conditional on this choice key ...
    parent_values: tuple = ()         # ... taking one of these values


def _text(value: Any) -> str:
    """A parsed override value back in override syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _choices(values: list) -> tuple:
    """Numbers stay numbers (ordered for Bayesian search); everything else is its override text."""
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return tuple(values)
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return tuple(float(v) for v in values)
    return tuple(_text(v) for v in values)


def _dimension(key: str, raw: Any) -> Dimension:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep, RangeSweep

    if isinstance(raw, (list, tuple)):  # a YAML list of values is a choice, like a,b,c
        return Dimension(key, "choice", _choices(list(raw)))
    try:
        override = OverridesParser.create().parse_override(f"{key}={_text(raw) if not isinstance(raw, str) else raw}")
    except Exception as error:
        raise SpaceError(f"search space entry {key}: {raw!r} is not valid Hydra override syntax: {error}") from None
    value = override.value()
    if override.is_choice_sweep() or isinstance(value, RangeSweep):
        values = list(override.sweep_iterator())
        if not values:
            raise SpaceError(f"search space entry {key}: {raw!r} has no values")
        return Dimension(key, "choice", _choices(values))
    if isinstance(value, IntervalSweep):
        unknown = set(value.tags) - {"log"}
        if unknown:
            raise SpaceError(f"search space entry {key}: tags {sorted(unknown)} not understood; allowed: log")
        low, high = value.start, value.end
        if not low < high:
            raise SpaceError(f"search space entry {key}: interval({low}, {high}) needs low < high")
        log = "log" in value.tags
        if log and low <= 0:
            raise SpaceError(f"search space entry {key}: log sampling needs low > 0 (got {low})")
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
        return Dimension(key, kind, low=low, high=high, log=log)
    if override.is_sweep_override():
        raise SpaceError(f"search space entry {key}: {raw!r} is not supported; use a,b,c, range(), "
                         "interval(a,b), int(interval(a,b)) or tag(log, interval(a,b))")
    return Dimension(key, "choice", _choices([value]))  # a single value: fixed


def parse_space(params: Mapping[str, Any], conditions: Optional[Mapping[str, str]] = None) -> list[Dimension]:
    """Dimensions in declaration order, every condition's parent before its dependants."""
    dims = {key: _dimension(str(key), raw) for key, raw in (params or {}).items()}
    if not dims:
        raise SpaceError("the sweep file declares no hydra.sweeper.params: nothing to search")
    for key, rule in (conditions or {}).items():
        parent, sep, values = str(rule).partition("=")
        parent = parent.strip()
        if key not in dims:
            raise SpaceError(f"sweep.conditions.{key}: {key} is not an entry of hydra.sweeper.params "
                             f"(entries: {', '.join(dims)})")
        if not sep or parent not in dims or dims[parent].kind != "choice":
            raise SpaceError(f"sweep.conditions.{key}={rule!r}: must be 'CHOICE_KEY=value[,value]' where "
                             f"CHOICE_KEY is a choice entry ({', '.join(k for k, d in dims.items() if d.kind == 'choice')})")
        if parent == key:
            raise SpaceError(f"sweep.conditions.{key}: an entry cannot depend on itself")
        wanted = [v.strip() for v in values.split(",")]
        by_text = {_text(c): c for c in dims[parent].choices}
        missing = [v for v in wanted if v not in by_text]
        if missing:
            raise SpaceError(f"sweep.conditions.{key}={rule!r}: {missing} not among {parent}'s choices "
                             f"{list(by_text)}")
        d = dims[key]
        dims[key] = Dimension(d.key, d.kind, d.choices, d.low, d.high, d.log, parent,
                              tuple(by_text[v] for v in wanted))
    for d in dims.values():
        if d.parent and dims[d.parent].parent:
            raise SpaceError(f"sweep.conditions.{d.key}: its parent {d.parent} is itself conditional; "
                             "only one level of conditions is supported")
    return sorted(dims.values(), key=lambda d: d.parent is not None)


def pin(dims: list[Dimension], pinned: dict[str, str]) -> list[Dimension]:
    """Drop the entries the command line fixes (``key=value``); their dependants follow the pinned value."""
    kept = []
    for d in dims:
        if d.key in pinned:
            continue
        if d.parent in pinned:
            if pinned[d.parent] not in {_text(v) for v in d.parent_values}:
                continue  # its condition can never hold
            d = Dimension(d.key, d.kind, d.choices, d.low, d.high, d.log)
        kept.append(d)
    if not kept:
        raise SpaceError(f"the command line fixes every entry of the space ({', '.join(pinned)}): nothing to search")
    return kept


def declare(hp, dims: list[Dimension], defaults: Optional[Mapping[str, Any]] = None) -> None:
    """Register the space on a KerasTuner HyperParameters object; ``defaults`` (values by key) become the
    entries' defaults (KerasTuner's grid starts from them)."""
    for d in dims:
        default = (defaults or {}).get(d.key)
        if d.parent:
            with hp.conditional_scope(d.parent, list(d.parent_values)):
                _declare_one(hp, d, default)
        else:
            _declare_one(hp, d, default)


def _declare_one(hp, d: Dimension, default: Any = None) -> None:
    if d.kind == "choice":
        if len(d.choices) == 1:
            hp.Fixed(d.key, d.choices[0])
        else:
            hp.Choice(d.key, list(d.choices), ordered=False if isinstance(d.choices[0], str) else None, default=default)
    elif d.kind == "int":
        hp.Int(d.key, int(d.low), int(d.high), sampling="log" if d.log else "linear", default=default)
    else:
        hp.Float(d.key, float(d.low), float(d.high), sampling="log" if d.log else "linear", default=default)


def active_values(dims: list[Dimension], hp) -> dict:
    """The values of the space's active entries in a KerasTuner ``HyperParameters`` (conditions applied)."""
    return {d.key: hp.get(d.key) for d in dims if hp.is_active(d.key)}


def to_overrides(dims: list[Dimension], values) -> list[str]:
    """The active sampled values (a mapping of the active entries, or KerasTuner's ``hp``) as Hydra
    override strings, e.g. ``optimizer.learning_rate=0.00312``."""
    active = values if isinstance(values, Mapping) else active_values(dims, values)
    overrides = []
    for d in dims:
        if d.key not in active:
            continue
        value = active[d.key]
        text = f"{value:.6g}" if isinstance(value, float) else _text(value)
        overrides.append(f"{d.key}={text}")
    return overrides


def has_intervals(dims: list[Dimension]) -> bool:
    return any(d.kind != "choice" for d in dims)


def fingerprint(dims: list[Dimension], strategy: str, base: Sequence[str] = ()) -> str:
    """Identifies a search: the same space, strategy and base overrides resume, anything else is a new search.

    ``base`` are the command line's overrides that change what a trial trains (the caller leaves
    out settings such as ``tuner.max_trials``); their order does not matter. Without any, the
    value is the one of the space and strategy alone, so older saved searches still resume.
    """
    identity: dict[str, Any] = {"strategy": strategy, "space": [asdict(d) for d in dims]}
    if base:
        identity["base"] = sorted(base)
    blob = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe(dims: list[Dimension]) -> list[dict]:
    """A plain-data view of the space (stored with the search)."""
    return [{k: v for k, v in asdict(d).items() if v not in (None, (), False)} for d in dims]


# --- the space against the config: each entry a known key, each end of its range allowed -------

def check_space(cfg: DictConfig, dims) -> None:
    """Every search-space entry names a known key or group, and each end of its range (each choice)
    passes ``validate`` on ``cfg``: refused before the first trial, not by every trial."""
    import copy

    import yaml
    from omegaconf import OmegaConf

    from fashion_lab.config import CONF_DIR, ConfigError, group_names, unknown_key_message
    from fashion_lab.preflight import validate

    for d in dims:
        message = unknown_key_message(d.key)
        if message:
            raise ConfigError(f"search space entry {d.key}: {message}")
        if d.key in group_names():
            options = sorted(p.stem for p in (CONF_DIR / d.key).glob("*.yaml"))
            bad = [c for c in d.choices if str(c) not in options]
            if bad:
                raise ConfigError(f"search space entry {d.key}={','.join(map(str, d.choices))}: {bad} "
                                  f"not allowed: options of group {d.key} are {', '.join(options)}")
            continue
        shown = ",".join(map(str, d.choices)) if d.kind == "choice" else f"interval({d.low}, {d.high})"
        for value in (d.choices if d.kind == "choice" else (d.low, d.high)):
            trial = copy.deepcopy(cfg)
            try:
                OmegaConf.update(trial, d.key, yaml.safe_load(value) if isinstance(value, str) else value,
                                 merge=False)
                validate(trial)
            except ConfigError as error:
                if str(error).startswith(d.key + "="):  # only this entry's own range, not other rules
                    raise ConfigError(f"search space entry {d.key}={shown} reaches a value that "
                                      f"is not allowed: {error}") from None
            except Exception as error:  # OmegaConf: a value of the wrong type
                raise ConfigError(f"search space entry {d.key}={shown}: {value!r} is not allowed: "
                                  f"{str(error).splitlines()[0]}") from None
