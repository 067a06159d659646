"""Sweep files (``sweeps/``, the Hydra group ``sweep``): listing, grid dimensions and points, sizes.

``fashion-lab sweep NAME [overrides]`` is ``fashion-lab train -m sweep=NAME [overrides]`` for a grid
and ``fashion-lab tune NAME`` for a search (fashion_lab/cli/commands.py); fashion_lab/sweeps/campaign.py
records either. Importing this module stays cheap: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import DictConfig, OmegaConf

from fashion_lab.config import REFUSED_SWEEPS, ConfigError, point_name, short_key, sweep_files  # noqa: F401 - re-exported

USAGE = """usage: fashion-lab sweep NAME [overrides...]   run sweeps/NAME.yaml (a grid: train -m sweep=NAME)
       fashion-lab sweep --list                 every sweep with its description, strategy and size

  fashion-lab sweep quickstart
  fashion-lab sweep bn_placement trainer.epochs=5 data=fashion_mnist
  fashion-lab sweep conv_dropout sweep.seeds=3                 # repeat every point over seeds 0, 1, 2
  fashion-lab sweep ablation sweep.plan=true                   # the plan: runs, time here, what it can detect
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


def launch_in_batches(launcher, batch: list[list[str]], job: int, max_batch_size) -> list:
    """``batch`` on ``launcher``, at most ``hydra.sweeper.max_batch_size`` jobs at a time, numbered from
    ``job``: what Hydra's basic sweeper does, for fashion-lab's own sweepers."""
    results, size = [], max_batch_size or len(batch)
    for first in range(0, len(batch), size):
        results += list(launcher.launch(batch[first:first + size], initial_job_idx=job + first))
    return results


def check_sweeper(config, name: str) -> None:
    """sweep.race and sweep.until_sure need their own sweeper; a plain grid would ignore them silently
    (``train -m ... sweep.race=true``)."""
    sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).lower()
    for key in ("race", "until_sure"):
        if config.sweep[key] and f"fashion_lab_{key}." not in sweeper:  # its plugin package
            raise ConfigError(f"sweep.{key}=true needs its sweeper: `fashion-lab sweep {name} sweep.{key}=true` "
                              f"chooses it; with train -m add hydra/sweeper={key}")


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


def planned(config: DictConfig, points: list) -> dict[str, str]:
    """Tags for progress: the runs this sweep plans, and with sweep.until_sure the most it may run."""
    from fashion_lab.record.tracking import TAG

    if not config.sweep.until_sure:
        return {TAG + "runs_planned": str(len(points))}
    return {TAG + "runs_planned": str(len(points) * max(2, int(config.sweep.seeds))),
            TAG + "runs_max": str(len(points) * max(2, int(config.sweep.max_seeds)))}


# Training throughput behind the expected times: the tutorial network at batch 32 on 2 AMD EPYC cores
# (README, "The quickstart"; the quickstart measured 300 to 400 under load). Evaluating an image costs
# about a third of training on one.
IMAGES_PER_S = 400
_POOL = {"fashion_mnist": 60000, "fashion_mnist_test": 10000}  # the dataset's own sizes


def _group_option(node, group: str) -> Optional[str]:
    """The option of GROUP a defaults list selects (``override /GROUP: option`` or ``GROUP: option``), if any."""
    for entry in OmegaConf.select(node, "defaults", default=None) or []:
        if isinstance(entry, dict) or OmegaConf.is_config(entry):
            for key, value in dict(entry).items():
                if str(key).split()[-1].lstrip("/") == group and value is not None:
                    return str(value)
    return None


@functools.lru_cache(maxsize=None)
def _conf_file(path: Path):
    """A conf/ file, read once per process (a listing asks each a dozen times per sweep)."""
    return OmegaConf.load(path) if path.exists() else None


@functools.lru_cache(maxsize=1)
def _schema():
    from fashion_lab.config.schema import Config

    return OmegaConf.structured(Config)


def _experiments(node) -> list:
    """The experiment a sweep file selects, then each experiment it extends (experiment=fast: fast, tutorial)."""
    from fashion_lab.config import CONF_DIR

    found, name = [], _group_option(node, "experiment")
    while name and (experiment := _conf_file(CONF_DIR / "experiment" / f"{name}.yaml")) and len(found) < 10:
        found.append(experiment)
        name = next((str(e) for e in OmegaConf.select(found[-1], "defaults", default=None) or []
                     if isinstance(e, str) and e != "_self_"), None)
    return found


def _setting(node, key: str):
    """A key as the sweep file composes it, without composing (that takes a second per sweep): the file's own
    value, else its experiment's, else its group option's file (or conf/config.yaml's choice), else the schema's."""
    from fashion_lab.config import CONF_DIR

    group, _, rest = key.partition(".")
    for source in [node, *_experiments(node)]:
        if (found := OmegaConf.select(source, key, default=None)) is not None:
            return found
    option = _group_option(node, group) or _group_option(_conf_file(CONF_DIR / "config.yaml"), group)
    group_file = _conf_file(CONF_DIR / group / f"{option}.yaml")
    if group_file is not None and (found := OmegaConf.select(group_file, rest, default=None)) is not None:
        return found
    return OmegaConf.select(_schema(), key, default=None, throw_on_missing=False)


def budget(path: Path) -> dict:
    """Seeds per point, epochs, training images and the expected minutes of a sweep file (None where unknown:
    a Hyperband schedule), from IMAGES_PER_S for the tutorial network."""
    node = OmegaConf.load(path)
    data = str(_setting(node, "data.name")).split(".")[-1]  # an enum's str is DataName.synthetic
    val = int(_setting(node, "data.val_samples"))
    pool = int(_setting(node, "data.synthetic_train")) if data == "synthetic" else _POOL["fashion_mnist"]
    train = int(_setting(node, "data.train_samples") or pool - val)
    test = int(_setting(node, "data.synthetic_test")) if data == "synthetic" else _POOL["fashion_mnist_test"]
    epochs = int(_setting(node, "trainer.epochs"))
    seeds = int(_setting(node, "sweep.seeds"))
    swept_seed = dimensions(_params(node)).get("trainer.seed")
    if swept_seed is not None and swept_seed.is_sweep_override() and swept_seed.is_discrete_sweep():
        seeds = len(list(swept_seed.sweep_string_iterator()))  # seeds given as a dimension (ablation)
    most = int(_setting(node, "sweep.max_seeds")) if _setting(node, "sweep.until_sure") else seeds
    shown = size(path)
    runs = int(shown.split()[0]) if shown.split()[0].isdigit() else None
    if strategy(path) != "grid":
        tuner = str(_setting(node, "tuner.strategy"))
        runs = None if tuner == "hyperband" else (runs or int(_setting(node, "tuner.max_trials"))) * int(
            _setting(node, "tuner.executions_per_trial"))
    per_run = (epochs * (train + val / 3) + test / 3) / IMAGES_PER_S
    minutes = None if runs is None else (runs * per_run / 60, runs // max(1, seeds) * max(seeds, most) * per_run / 60)
    return {"seeds": (seeds, max(seeds, most)), "epochs": epochs, "train_images": train, "minutes": minutes}


def _budget_text(b: dict) -> tuple[str, str, str, str]:
    low, high = b["seeds"]
    seeds = f"{low}" if low == high else f"{low}-{high}"
    if b["minutes"] is None:
        time = "schedule"
    else:
        a, z = (max(1, round(m)) for m in b["minutes"])
        time = f"~{a} min" if a == z else f"~{a}-{z} min"
    return seeds, str(b["epochs"]), f"{b['train_images']:,}", time


def list_sweeps(stream=sys.stdout) -> None:
    """Every sweep: strategy, size, seeds per point, epochs, training images, expected time, description."""
    files = sweep_files()
    width = max((len(n) for n in files), default=4)
    # the column header goes to stderr: stdout stays one line per sweep, for scripts
    print(f"{'NAME':<{width}}  {'STRATEGY':<9} {'SIZE':>10}  {'SEEDS':>5} {'EPOCHS':>6} {'IMAGES':>7} {'TIME':>11}  "
          f"DESCRIPTION   (TIME: expected, from ~{IMAGES_PER_S} training images/s, the tutorial network on "
          f"2 CPU cores; IMAGES: training images per epoch)", file=sys.stderr if stream is sys.stdout else stream)
    for name, path in files.items():
        if name in REFUSED_SWEEPS:  # listed, never read: its reason instead of its size
            print(f"{name:<{width}}  refused: {REFUSED_SWEEPS[name].split(' is refused: ', 1)[-1]}", file=stream)
            continue
        seeds, epochs, images, time = _budget_text(budget(path))
        print(f"{name:<{width}}  {strategy(path):<9} {size(path):>10}  {seeds:>5} {epochs:>6} {images:>7} {time:>11}  "
              f"{description(path)}", file=stream)


# --- launching -------------------------------------------------------------------------------

def with_seeds(path: Path, overrides: list[str]) -> list[str]:
    """``sweep.seeds=N``: the overrides plus ``trainer.seed=s,...,s+N-1`` (s = the run's trainer.seed)."""
    from fashion_lab.preflight import check_seeds

    text = setting(path, overrides, "sweep.seeds", 1)
    try:
        seeds = int(text)
    except ValueError:
        seeds = 0
    most = setting(path, overrides, "sweep.max_seeds", 10)
    most = int(most) if most.lstrip("-").isdigit() else 10  # not an integer: Hydra refuses it by its type
    if seeds < 1:
        raise ConfigError(f"sweep.seeds={text}: give an integer >= 1 (seeds per point)")
    # before 100,000 seeds become a trainer.seed dimension: refused in a second, not silent for minutes
    check_seeds(seeds, most, setting(path, overrides, "sweep.until_sure", False).lower() == "true")
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
