"""Config keys: the schema's key list, unknown-key hints, flattening, settings vs what a run computes."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from fashion_lab.config.loading import CONF_DIR, REFUSED_SWEEPS
from fashion_lab.config.schema import Config, ConfigError

# --- unknown keys, however they were added ----------------------------------------------------

@functools.cache
def _schema() -> DictConfig:
    # Built once: validate() asks about every key of a config, and a search validates each end of its space.
    schema = OmegaConf.structured(Config)
    OmegaConf.set_readonly(schema, True)
    return schema


def schema_keys(node=None, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (sections included)."""
    node = _schema() if node is None else node
    keys = []
    for key in node.keys():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        child = node._get_node(key)
        if isinstance(child, DictConfig) and OmegaConf.get_type(child) not in (dict, None):
            keys += schema_keys(child, dotted + ".")
    return keys


@functools.cache
def _group_names() -> tuple[str, ...]:
    return tuple(sorted({p.name for p in CONF_DIR.iterdir() if p.is_dir()} | {"sweep"}))


def group_names() -> list[str]:
    """Config groups selectable as ``group=option`` (conf/ folders and the sweep group)."""
    return list(_group_names())


def unknown_key_message(key: str) -> Optional[str]:
    """None when ``key`` names a schema key or a config group; else a line with the closest key."""
    import difflib

    node: Any = _schema()
    parts = key.split(".")
    if len(parts) == 1 and key in group_names():
        return None
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            if node is not None and node._metadata.ref_type is Any:  # free-form, such as sweep.trial
                return None
            break
        if OmegaConf.get_type(node) is dict:  # a free-form mapping such as sweep.conditions
            return None
        if part not in node.keys():  # keys(): `in` is False for a MISSING (YAML-stated) value
            break
        node = node._get_node(part)
    else:
        return None
    known = schema_keys() + group_names()
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "; `fashion-lab train --help` lists every key"
    return f"unknown key {key!r}: not in the config schema (adding it with + does not make it known){hint}"


BOOLEANS = ("true", "false", "yes", "no", "on", "off", "1", "0")  # what OmegaConf reads as a bool


def _plain_values(value: str) -> Optional[list[str]]:
    """An override's value as plain words (``a`` or a sweep's ``a,b``); None for anything richer
    (choice(), range(), lists, quotes, interpolations), which Hydra itself checks."""
    if not value or any(c in value for c in "()[]{}$'\"\\ "):
        return None
    return value.split(",")


def _allowed_values(key: str) -> Optional[list[str]]:
    """The closed set a key's value comes from: a config group's options, an enum's names, or the
    booleans; None for an open type (numbers, strings)."""
    from omegaconf.nodes import BooleanNode, EnumNode

    if key == "sweep":
        from fashion_lab.config.loading import sweep_files

        return sorted(sweep_files())
    if key in group_names():
        return sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
    parent, _, leaf = key.rpartition(".")
    holder = OmegaConf.select(_schema(), parent) if parent else None
    node = holder._get_node(leaf) if isinstance(holder, DictConfig) and leaf in holder.keys() else None
    if isinstance(node, EnumNode):
        return [member.name for member in node._metadata.object_type]
    if isinstance(node, BooleanNode):
        return ["true", "false"]
    return None


def value_message(key: str, value: str) -> Optional[str]:
    """None when each plain value of ``key=value`` is allowed; else one line with the allowed values
    and the closest one ("did you mean"), before Hydra composes anything."""
    import difflib

    allowed, words = _allowed_values(key), _plain_values(value)
    if not allowed or words is None:
        return None
    for word in words:
        if word in allowed or word == "null" or (allowed == ["true", "false"] and word.lower() in BOOLEANS):
            continue
        if allowed == ["true", "false"]:
            return f"{key}={word} is not allowed: not a valid bool (true or false)"
        close = difflib.get_close_matches(word, allowed, n=1, cutoff=0.5)
        hint = f"; did you mean {key}={close[0]}?" if close else ""
        return f"{key}={word} is not allowed: one of {', '.join(allowed)}{hint}"
    return None


def check_overrides(overrides) -> None:
    """Refuse command-line overrides of unknown keys (with or without +/++/~), and values outside a
    closed set (a config group's options, an enum, a bool), before Hydra composes."""
    for line in overrides:
        if line.startswith("-") or "=" not in line:
            continue  # Hydra flags (-m, --cfg job, ...)
        key = line.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        if key == "sweep":
            for name in line.split("=", 1)[1].split(","):
                if name.strip() in REFUSED_SWEEPS:
                    raise ConfigError(REFUSED_SWEEPS[name.strip()])
        if key.startswith("hydra") or "/" in key:
            continue  # Hydra's own settings and nested groups (hydra/launcher=joblib)
        message = unknown_key_message(key)
        if message:
            raise ConfigError(f"{line}: {message}")
        if not line.startswith("~"):
            message = value_message(key, line.split("=", 1)[1])
            if message:
                raise ConfigError(message)


def check_known_keys(cfg: DictConfig) -> None:
    """Refuse keys the schema does not know in a composed config (added by +key or a config file)."""
    def walk(node, prefix):
        for key in node.keys():
            dotted = f"{prefix}{key}"
            if dotted == "hydra":  # present when composed with the Hydra config; Hydra checks it
                continue
            message = unknown_key_message(dotted)
            if message:
                raise ConfigError(f"{dotted}={OmegaConf.select(node, str(key))!r}: {message}")
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                walk(child, dotted + ".")
    walk(cfg, "")


def without_hydra(cfg: DictConfig) -> DictConfig:
    """A composed config without its ``hydra`` node: what a run is configured by."""
    return OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """The resolved config as ``{"model.bn_placement": "after", ...}``: MLflow params and report columns."""
    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True) if isinstance(
        cfg, (DictConfig, ListConfig)) else cfg
    flat: dict[str, Any] = {}
    for key, value in container.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


# --- credentials never recorded ----------------------------------------------------------------

# The userinfo of any URI in a text (postgresql://user:password@host/db): what must never reach a store.
_USERINFO = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def mask_userinfo(text: Any) -> Any:
    """``text`` with every URI's ``user:password@`` replaced by ``***@``; other values unchanged."""
    return _USERINFO.sub(r"\1***@", text) if isinstance(text, str) else text


# The search strategies, in one list: tuner.strategy (each a search backend) and sweep.strategy
# (recorded on a sweep's parent: how its points were chosen).
STRATEGIES = ("random", "bayesian", "hyperband", "grid", "tpe", "cmaes")
OPTUNA_STRATEGIES = ("tpe", "cmaes")  # the Optuna backend's; the others are KerasTuner's
PRUNERS = ("none", "median", "wilcoxon")  # tuner.pruner (Optuna strategies only)


# Keys that configure a command (search budget, report, UI) or a sweep's plumbing: not recorded as params.
# What a sweep's jobs get on their command line from the campaign (and sweep.restart): neither recorded nor computed.
SWEEP_PLUMBING = ("sweep.restart", "sweep.parent_run_id", "sweep.trial", "sweep.swept_keys", "sweep.continues_run")
# (sweep.parent_run_id is recorded as a param too: a job's own config names its parent.)
COMMAND_KEYS = ("tuner", "report", "reproduce", "ui", "sweep.restart", "sweep.trial", "sweep.swept_keys",
                "sweep.initial_points", "sweep.plan", "sweep.continues_run",
                "sweep.pack", "sweep.pack_seeds")  # how seeds are scheduled: a packed run records as a single one
# Keys that never change what a run computes: where and how it is recorded, printed, scheduled or cached.
# The one list behind config_id, the search fingerprint, skipping finished sweep points and run names.
SETTINGS = (*COMMAND_KEYS, "sweep", "tracking", "hydra", "trainer.verbose", "trainer.threads", "data.cache",
            "data.tf_autotune")


def _under(key: str, prefixes) -> bool:
    key = key.lstrip("+~")
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def is_setting(key: str) -> bool:
    """True for a key (or an override's key) that does not change what a run computes."""
    return _under(key, SETTINGS)


def is_plumbing(key: str) -> bool:
    return _under(key, SWEEP_PLUMBING)


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The dotted config a run records as MLflow params: everything but the command keys."""
    return {k: mask_userinfo(v) for k, v in flatten(cfg).items() if not _under(k, COMMAND_KEYS)}


def config_hash(cfg: DictConfig, *, with_seed: bool) -> str:
    """What a run computes, hashed: without the seed it groups repeats (config_id); with it, it
    identifies a sweep point, so a resumed sweep skips points already finished (run_key)."""
    kept = {k: v for k, v in run_params(cfg).items() if not is_setting(k) and (with_seed or k != "trainer.seed")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:12]


def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def point_name(overrides, keys) -> str:
    """``bn_placement=before conv_dropout=0.25``: the overrides' values of ``keys``, short keys, in order."""
    values = {override_key(o): o.partition("=")[2] for o in overrides}
    return " ".join(f"{short_key(k)}={values[k]}" for k in keys if k in values)


def typed(value: Optional[str]):
    """An MLflow param string back to a Python value: numbers as numbers, 'None' as None."""
    if value is None or value == "None":
        return None
    if value in ("True", "False"):
        return value == "True"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value
