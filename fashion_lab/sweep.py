"""Sweep files (``sweeps/``, the Hydra group ``sweep``): listing, grid dimensions and points, sizes.

``fashion-lab sweep NAME [overrides]`` is ``fashion-lab train -m sweep=NAME [overrides]`` for a grid
and ``fashion-lab tune NAME`` for a search (fashion_lab/commands.py); fashion_lab/campaign.py
records either. Importing this module stays cheap: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import OmegaConf

from fashion_lab.config import ConfigError, point_name, short_key, sweep_files  # noqa: F401 - re-exported

USAGE = """usage: fashion-lab sweep NAME [overrides...]   run sweeps/NAME.yaml (a grid: train -m sweep=NAME)
       fashion-lab sweep --list                 every sweep with its description, strategy and size

  fashion-lab sweep quickstart
  fashion-lab sweep bn_placement trainer.epochs=5 data=fashion_mnist
  fashion-lab sweep conv_dropout sweep.seeds=3                 # repeat every point over seeds 0, 1, 2
  fashion-lab sweep optimizer hydra/launcher=joblib hydra.launcher.n_jobs=2   # 2 points at a time
  fashion-lab train -m model.bn_placement=before,after model.conv_dropout=0,0.25   # ad-hoc grid

Overrides that vary (a,b,c) add dimensions; plain key=value overrides fix a value for every point.
A sweep whose sweep.strategy is not grid runs as a KerasTuner search (fashion-lab tune NAME);
sweep.strategy=grid forces a grid when all its dimensions are choices."""


# --- sweep files ----------------------------------------------------------------------------

def description(path: Path) -> str:
    """The file's first comment line."""
    for line in Path(path).read_text().splitlines():
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
    return ""


def setting(path: Path, overrides: Iterable[str], key: str, default) -> str:
    """A plain setting as the sweep will see it: the file's value, unless an override sets it."""
    found = str(OmegaConf.select(OmegaConf.load(path), key, default=default))
    return next((o.split("=", 1)[1] for o in reversed(list(overrides)) if o.lstrip("+").startswith(key + "=")),
                found)


def strategy(path: Path, overrides: Iterable[str] = ()) -> str:
    """The file's ``sweep.strategy`` (grid by default), unless an override sets it."""
    return setting(path, overrides, "sweep.strategy", "grid")


def _params(node) -> dict[str, str]:
    params = OmegaConf.select(node, "hydra.sweeper.params", default=None) or {}
    return {str(k): str(v) for k, v in params.items()}


def dimensions(params: dict[str, str], overrides: Iterable[str] = (), config_loader=None) -> dict:
    """key -> parsed Override, file params first, then command line (a later key wins, like BasicSweeper).
    Hydra's own parser, so values mean exactly what multirun will make of them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    merged: dict[str, Any] = {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(overrides)
    for override in OverridesParser.create(config_loader=config_loader).parse_overrides(lines):
        if override.is_hydra_override():
            continue
        merged.pop(override.get_key_element(), None)
        merged[override.get_key_element()] = override
    return merged


def value_text(override) -> str:
    """The override's value as written (``before,after``, ``interval(0.1,1)``)."""
    return override.input_line.split("=", 1)[1] if override.input_line else str(override.value())


def swept_keys(dims: dict) -> list[str]:
    return [key for key, override in dims.items() if override.is_sweep_override()]


def check_grid(dims: dict, name: str = "this sweep") -> None:
    """Ranges (interval) are for a tuner; a grid needs every dimension as a list of choices."""
    for key, override in dims.items():
        if override.is_sweep_override() and not override.is_discrete_sweep():
            raise ConfigError(f"{key}={value_text(override)} is a range, which only a tuner "
                              f"can sample; {name} runs as a grid: give choices (a,b,c) or set "
                              f"sweep.strategy to random|bayesian|hyperband")


def points(dims: dict) -> list[list[str]]:
    """Every point's overrides (the cartesian product, in BasicSweeper's order)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return BasicSweeper.split_arguments(list(dims.values()), None)[0]


def size(path: Path) -> str:
    """Number of grid points, or the tuner's budget (``tuner.max_trials``) / "search" for other strategies."""
    node = OmegaConf.load(path)
    dims = dimensions(_params(node))
    if strategy(path) != "grid":
        budget = OmegaConf.select(node, "tuner.max_trials", default=None)
        return f"{budget} trials" if budget is not None else "search"
    total = 1
    for override in dims.values():
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                return "search"
            total *= len(list(override.sweep_string_iterator()))
    return f"{total * int(OmegaConf.select(node, 'sweep.seeds', default=1))} points"


def list_sweeps(stream=sys.stdout) -> None:
    files = sweep_files()
    width = max((len(n) for n in files), default=4)
    for name, path in files.items():
        print(f"{name:<{width}}  {strategy(path):<9} {size(path):>10}  {description(path)}", file=stream)


# --- launching -------------------------------------------------------------------------------

def with_seeds(path: Path, overrides: list[str]) -> list[str]:
    """``sweep.seeds=N``: the overrides plus ``trainer.seed=s,...,s+N-1`` (s = the run's trainer.seed)."""
    text = setting(path, overrides, "sweep.seeds", 1)
    try:
        seeds = int(text)
    except ValueError:
        seeds = 0
    if seeds < 1:
        raise ConfigError(f"sweep.seeds={text}: give an integer >= 1 (seeds per point)")
    if seeds == 1:
        return overrides
    swept = dimensions(_params(OmegaConf.load(path)), overrides).get("trainer.seed")
    if swept is not None and swept.is_sweep_override():
        raise ConfigError(f"sweep.seeds={seeds} and trainer.seed={value_text(swept)} both choose the seeds: "
                          f"give one of them")
    first = int(swept.value()) if swept is not None else int(
        OmegaConf.select(OmegaConf.load(path), "trainer.seed", default=0))
    rest = [o for o in overrides if o.partition("=")[0].lstrip("+") != "trainer.seed"]
    return rest + ["trainer.seed=" + ",".join(str(first + i) for i in range(seeds))]


def job_threads(launcher_cfg, cores: Optional[int] = None) -> Optional[int]:
    """TF threads per job so parallel jobs share the cores instead of oversubscribing them."""
    if isinstance(launcher_cfg, dict):
        launcher_cfg = OmegaConf.create(launcher_cfg)
    target = str(OmegaConf.select(launcher_cfg, "_target_", default="") or "")
    if "joblib" not in target.lower():
        return None
    cores = cores or len(os.sched_getaffinity(0))
    n_jobs = int(OmegaConf.select(launcher_cfg, "n_jobs", default=-1) or -1)
    workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores, -2 = all but one
    return max(1, cores // min(workers, cores))
