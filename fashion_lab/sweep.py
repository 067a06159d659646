"""Grid sweeps: the files in ``sweeps/``, their points, one point's task, and the end-of-sweep table.

``fashion-lab sweep NAME [overrides]`` is ``fashion-lab train -m sweep=NAME [overrides]``: Hydra's
multirun expands the grid, ``fashion_lab.callbacks.SweepCallback`` opens the parent MLflow run
before the first point and closes it after the last, and every point runs ``run_point`` (one
``train(cfg)`` as a child run). Importing this module stays cheap: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Iterable, Optional

from omegaconf import OmegaConf, open_dict

from fashion_lab.config import ConfigError, sweep_files, validate

SWEEP_FILE_ENV = "FASHION_LAB_SWEEP_FILE"   # path of the sweep's record, set for the points
SWEEP_RECORD = "fashion_lab_sweep.json"     # in hydra.sweep.dir: parent run id, swept keys, ...
POINT_RECORD = "fashion_lab_point.json"     # in each point's output dir: status, reason, metrics

USAGE = """usage: fashion-lab sweep NAME [overrides...]   run sweeps/NAME.yaml (a grid: train -m sweep=NAME)
       fashion-lab sweep --list                 every sweep with its description, strategy and size

  fashion-lab sweep quickstart
  fashion-lab sweep bn_placement trainer.epochs=5 data=fashion_mnist
  fashion-lab sweep conv_dropout sweep.seeds=3                 # repeat every point over seeds 0, 1, 2
  fashion-lab sweep optimizer hydra/launcher=joblib hydra.launcher.n_jobs=2   # 2 points at a time
  fashion-lab train -m model.bn_placement=before,after model.conv_dropout=0,0.25   # ad-hoc grid

Overrides that vary (a,b,c) add dimensions; plain key=value overrides fix a value for every point.
A sweep whose sweep.strategy is not grid runs as a KerasTuner search (fashion_lab.tune);
sweep.strategy=grid forces a grid when all its dimensions are choices."""


# --- sweep files ----------------------------------------------------------------------------

def description(path: Path) -> str:
    """The file's first comment line."""
    for line in Path(path).read_text().splitlines():
        if line.strip().startswith("#"):
            return line.strip().lstrip("#").strip()
    return ""


def _params(node) -> dict[str, str]:
    params = OmegaConf.select(node, "hydra.sweeper.params", default=None) or {}
    return {str(k): str(v) for k, v in params.items()}


def parse_overrides(lines: Iterable[str], config_loader=None) -> list:
    """Hydra's own parser, so values mean exactly what multirun will make of them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create(config_loader=config_loader).parse_overrides(list(lines))


def dimensions(params: dict[str, str], overrides: Iterable[str] = (), config_loader=None) -> dict:
    """key -> parsed Override, file params first, then command line (a later key wins, like BasicSweeper)."""
    merged: dict[str, Any] = {}
    for override in parse_overrides([f"{k}={v}" for k, v in params.items()] + list(overrides), config_loader):
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
    strategy = str(OmegaConf.select(node, "sweep.strategy", default="grid"))
    dims = dimensions(_params(node))
    if strategy != "grid":
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
        strategy = str(OmegaConf.select(OmegaConf.load(path), "sweep.strategy", default="grid"))
        print(f"{name:<{width}}  {strategy:<9} {size(path):>10}  {description(path)}", file=stream)


# --- the command ------------------------------------------------------------------------------

def _setting(path: Path, overrides: list[str], key: str, default) -> str:
    """A plain setting as the sweep will see it: the file's value, or the command line's."""
    value = str(OmegaConf.select(OmegaConf.load(path), key, default=default))
    for line in overrides:
        name, _, text = line.partition("=")
        if name.lstrip("+") == key:
            value = text
    return value


def _strategy(path: Path, overrides: list[str]) -> str:
    return _setting(path, overrides, "sweep.strategy", "grid")


def with_seeds(path: Path, overrides: list[str]) -> list[str]:
    """``sweep.seeds=N``: the overrides plus ``trainer.seed=s,...,s+N-1`` (s = the run's trainer.seed)."""
    text = _setting(path, overrides, "sweep.seeds", 1)
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


def sweep_command(argv: list[str]) -> int:
    from fashion_lab.commands import fail, train_command

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--list":
        list_sweeps()
        return 0
    name, overrides = argv[0], [a for a in argv[1:] if a not in ("-m", "--multirun")]
    files = sweep_files()
    if name not in files:
        fail(f"unknown sweep {name!r}; available: {', '.join(files) or '(none in sweeps/)'} "
             f"(fashion-lab sweep --list describes them)")
    strategy = _strategy(files[name], overrides)
    if strategy != "grid" and _setting(files[name], overrides, "sweep.seeds", 1) != "1":
        fail(f"sweep.seeds is for grids; sweep {name!r} is a {strategy} search: repeat each trial with "
             f"tuner.executions_per_trial=N instead")
    if strategy != "grid":
        try:
            tune = importlib.import_module("fashion_lab.tune")
        except ModuleNotFoundError as error:
            if error.name != "fashion_lab.tune":
                raise
            fail(f"sweep {name!r} uses sweep.strategy={strategy}, a KerasTuner search, but fashion_lab.tune "
                 f"is not installed in this checkout; force a grid with sweep.strategy=grid if every "
                 f"dimension is a list of choices")
        return int(tune.tune_command([name, *overrides]) or 0)
    try:
        if _setting(files[name], overrides, "sweep.until_sure", False).lower() == "true":
            overrides = [*overrides, "hydra/sweeper=until_sure"]  # it chooses the seeds round by round
        else:
            overrides = with_seeds(files[name], overrides)
        check_grid(dimensions(_params(OmegaConf.load(files[name])), overrides), f"sweep {name!r}")
    except ConfigError as error:
        fail(str(error))
    except Exception as error:  # Hydra's grammar errors name the bad override
        fail(f"sweep {name!r}: {error}")
    return train_command(["-m", f"sweep={name}", *overrides])


# --- one point (runs in the launcher's process or worker) ------------------------------------

def short_key(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def point_name(overrides: Iterable[str], keys: Iterable[str]) -> str:
    """``bn_placement=before conv_dropout=0.25``: the point's swept values, short keys, sweep order."""
    values = {}
    for line in overrides:
        key, _, value = line.partition("=")
        values[key.lstrip("+~")] = value
    return " ".join(f"{short_key(k)}={values[k]}" for k in keys if k in values)


def sweep_record() -> dict[str, Any]:
    """What the sweep's callback wrote for its points (empty outside a recorded sweep)."""
    from hydra.core.hydra_config import HydraConfig

    candidates = [os.environ.get(SWEEP_FILE_ENV)]
    if HydraConfig.initialized():
        candidates.append(str(Path(HydraConfig.get().sweep.dir) / SWEEP_RECORD))
    for candidate in filter(None, candidates):
        if Path(candidate).is_file():
            return json.loads(Path(candidate).read_text())
    return {}


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


def run_point(cfg) -> dict[str, Any]:
    """One multirun job: ``train(cfg)`` as a child of the sweep's parent run. Never raises on failure.

    A raising job makes Hydra's BasicSweeper abort the sweep after its batch, so a failure is
    caught here, recorded (the MLflow run is already FAILED with its reason; a point record in
    the job's output dir covers failures before a run exists) and reported at the end.
    """
    from hydra.core.hydra_config import HydraConfig

    from fashion_lab.commands import task_overrides

    record = sweep_record()
    overrides = task_overrides()
    keys = record.get("swept_keys") or [o.split("=", 1)[0] for o in overrides if "=" in o]
    name = point_name(overrides, keys) or None
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    if hydra_cfg is not None and cfg.trainer.threads is None:
        threads = job_threads(hydra_cfg.launcher)
        if threads:
            with open_dict(cfg):
                cfg.trainer.threads = threads  # applied by runtime.configure before TF starts in this worker
    result: dict[str, Any] = {"name": name, "overrides": overrides, "status": "FAILED", "reason": None,
                              "run_id": None, "metrics": {}}
    try:
        validate(cfg)
        from fashion_lab.tracking import child_tags
        from fashion_lab.train import print_result, train

        parent = record.get("parent_run_id")
        tags = child_tags(parent, record.get("sweep_name", ""), "point", "grid") if parent else None
        run = train(cfg, overrides=overrides, run_name=name, parent_run_id=parent, tags=tags)
        print_result(run)
        result.update(status="FINISHED", run_id=run.run_id,
                      metrics={k: float(v) for k, v in run.metrics.items()})
    except Exception as error:  # noqa: BLE001 - a failing point must not stop the others
        result["reason"] = f"{type(error).__name__}: {error}"[:2000]
        print(f"fashion-lab: point {name or overrides} FAILED: {result['reason']}", file=sys.stderr)
        if not isinstance(error, (ConfigError,)) and type(error).__name__ != "TrainingDiverged":
            traceback.print_exc()
    if hydra_cfg is not None:
        out = Path(hydra_cfg.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / POINT_RECORD).write_text(json.dumps(result, indent=1, default=str))
    return result


# --- the end-of-sweep table ------------------------------------------------------------------

def _overrides_dict(text: str) -> dict[str, str]:
    return dict(o.split("=", 1) for o in text.split() if "=" in o)


def summary_table(children: list[dict[str, Any]], keys: list[str]):
    """One row per point: swept values, val_accuracy, test_accuracy, epochs, seconds, status; best first.

    ``children``: dicts with ``overrides`` (list or dict), ``status``, ``metrics``, ``name``, ``reason``.
    """
    import pandas as pd

    rows = []
    for child in children:
        values = child["overrides"] if isinstance(child["overrides"], dict) else _overrides_dict(
            " ".join(child["overrides"]))
        m = child.get("metrics") or {}
        row = {short_key(k): values.get(k) for k in keys}
        row.update(val_accuracy=m.get("best_val_accuracy", math.nan), test_accuracy=m.get("test_accuracy", math.nan),
                   epochs=m.get("epochs_completed", math.nan), seconds=m.get("train_seconds", math.nan),
                   status=child.get("status"))
        row["_name"], row["_reason"], row["_run_id"] = child.get("name"), child.get("reason"), child.get("run_id")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["epochs"] = frame["epochs"].astype("Int64") if frame["epochs"].notna().any() else frame["epochs"]
    return frame.sort_values(["val_accuracy", "test_accuracy"], ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


def format_table(frame) -> str:
    shown = frame[[c for c in frame.columns if not c.startswith("_")]]
    formats = {"val_accuracy": "{:.4f}".format, "test_accuracy": "{:.4f}".format, "seconds": "{:.1f}".format}
    return shown.to_string(index=False, na_rep="-", formatters={
        k: (lambda f: lambda v: "-" if v != v else f(v))(f) for k, f in formats.items() if k in shown})
