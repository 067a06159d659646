"""Config schemas (dataclasses in Hydra's ConfigStore) and the range checks types can't express.

The YAML files under ``conf/`` hold every default value users see; these schemas
give them types, enums and a closed set of keys, so a typo'd key or a wrong type
fails at composition, before any data is loaded or any run is created.
Importing this module must stay cheap: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf


class DataName(enum.Enum):
    fashion_mnist = "fashion_mnist"
    synthetic = "synthetic"


class BNPlacement(enum.Enum):
    after = "after"    # the tutorial: Conv -> ReLU -> BN
    before = "before"  # Conv -> BN -> ReLU
    none = "none"


class Pooling(enum.Enum):
    max = "max"
    avg = "avg"
    l2 = "l2"


class OptimizerName(enum.Enum):
    sgd = "sgd"
    adam = "adam"
    rmsprop = "rmsprop"
    adamw = "adamw"


@dataclass
class DataConfig:
    name: DataName = DataName.fashion_mnist
    dir: Optional[str] = None            # searched first; then $FASHION_MNIST_DIR, Debian, Keras cache
    download: bool = False               # never touch the network unless asked
    url: str = "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    val_samples: int = 5000              # held out of the training set, stratified
    train_samples: Optional[int] = None  # stratified subset of the remaining training images; None = all
    split_seed: int = 0                  # fixed across trainer seeds so repeats see the same split
    cache: bool = True                   # reuse verified parsed arrays (see data.py)
    synthetic_train: int = 1000          # data=synthetic only: images generated per split
    synthetic_test: int = 300


@dataclass
class ModelConfig:
    name: str = "tutorial_cnn"
    filters: List[int] = field(default_factory=lambda: [32, 64])
    convs_per_stack: int = 2
    kernel_size: int = 3
    bn_placement: BNPlacement = BNPlacement.after
    conv_dropout: float = 0.0
    pooling: Pooling = Pooling.max
    dense_units: int = 512
    dense_dropout: float = 0.5


@dataclass
class OptimizerConfig:
    # Neutral defaults: each conf/optimizer/*.yaml states its own values, and
    # switching optimizer=adam must not inherit SGD's momentum.
    name: OptimizerName = OptimizerName.sgd
    learning_rate: float = 0.01
    momentum: Optional[float] = None      # sgd, rmsprop
    nesterov: bool = False                # sgd only
    weight_decay: Optional[float] = None  # decoupled decay (adamw); L2-style elsewhere
    decay: float = 0.0                    # legacy Keras 2 per-step inverse-time decay: lr0 / (1 + decay * step)


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    deterministic: bool = False            # TF op determinism: bit-identical reruns, slower
    early_stopping_patience: Optional[int] = None  # epochs without val_accuracy gain; None = off
    verbose: str = "auto"                  # Keras: auto (bar on a terminal, a line per epoch otherwise), 0, 1, 2
    jit_compile: bool = False
    threads: Optional[int] = None          # TF intra-op threads; None = TensorFlow's default


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"       # relative to the directory the command runs in
    experiment: str = "fashion-lab"
    artifact_location: Optional[str] = None  # None: next to a sqlite store, else the server's default
    run_name: Optional[str] = None
    log_weights: bool = True
    log_plots: bool = True


@dataclass
class SweepConfig:
    """What a file in ``sweeps/`` adds besides its ``hydra.sweeper.params`` (the dimensions)."""
    name: Optional[str] = None            # the file's name, set when it is registered
    strategy: str = "grid"                # grid (Hydra multirun) | random | bayesian | hyperband (KerasTuner)
    conditions: Dict[str, str] = field(default_factory=dict)  # tuner: key -> "choice=value" it depends on
    seeds: int = 1                        # grid: repeat every point over seeds trainer.seed .. trainer.seed+seeds-1
    until_sure: bool = False              # grid: add seeds to undecided comparisons (hydra/sweeper=until_sure)
    max_seeds: int = 10                   # until_sure: seeds per cell at most


@dataclass
class ReportConfig:
    """``fashion-lab report``: which runs, where the files go."""
    sweep: Optional[str] = None           # sweep/search name or parent run id; None = the latest sweep
    experiment: Optional[str] = None      # None = tracking.experiment
    out: Optional[str] = None             # None = reports/<sweep name>
    metric: str = "best_val_accuracy"     # leaderboard order (test_accuracy shown beside it)


@dataclass
class ReproduceConfig:
    """``fashion-lab reproduce RUN_ID``: allowed difference of each final metric (0 = exact)."""
    tolerance: float = 0.0


@dataclass
class UIConfig:
    """``fashion-lab ui``: where the MLflow UI listens (localhost only by default)."""
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 1                      # uvicorn workers; one is plenty for a local UI and starts fastest


@dataclass
class TunerConfig:
    """KerasTuner search settings (conf/tuner/*.yaml); see fashion_lab/tune.py."""
    strategy: str = "random"               # random | bayesian | hyperband | grid
    objective: str = "val_accuracy"        # the MLflow metric name; val_accuracy (max) or val_loss (min)
    max_trials: int = 10                   # not used by hyperband (its schedule decides)
    max_epochs: int = 10                   # hyperband: epochs of the longest round
    factor: int = 3                        # hyperband: reduction factor between rounds
    executions_per_trial: int = 1          # repeats per trial (seeds trainer.seed + i), objective averaged
    early_stopping_patience: Optional[int] = None  # applied as trainer.early_stopping_patience in trials
    directory: str = "outputs/tuner"       # tuner state: <directory>/<project>/
    project: Optional[str] = None          # defaults to the sweep name
    overwrite: bool = False                # true: discard the saved search and start over
    seed: int = 0                          # the oracle's sampling seed
    model_name: str = "fashion-lab-cnn"    # MLflow Model Registry name of the best model
    max_consecutive_failed_trials: int = 3
    fresh_process: bool = True             # each trial trains in a new process: memory stays bounded
                                           # (false: in the search process, a few s faster per trial,
                                           # but TensorFlow keeps ~16 MB per trial)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    reproduce: ReproduceConfig = field(default_factory=ReproduceConfig)
    ui: UIConfig = field(default_factory=UIConfig)
    tuner: TunerConfig = field(default_factory=TunerConfig)


PACKAGE_DIR = Path(__file__).resolve().parent
# The repository root when this runs from a checkout (an editable install, the tests, the notebooks);
# for a regular install it is only the folder that holds the package (site-packages).
REPO_DIR = PACKAGE_DIR.parent
# A checkout: conf/ and sweeps/ sit next to the package, with the project file. An installed wheel
# carries copies inside the package instead (fashion_lab/_conf, fashion_lab/_sweeps; see setup.py).
# pyproject.toml is checked too so that a stray top-level "conf" in site-packages is never taken.
FROM_CHECKOUT = (REPO_DIR / "pyproject.toml").is_file() and (REPO_DIR / "conf" / "config.yaml").is_file()


def _packaged(name: str) -> Path:
    """The copy of a data folder that ships in the wheel. Hydra needs a real folder, which a normal
    (unzipped) install has; a zip import would give a path Hydra reports as not found."""
    from importlib.resources import files

    return Path(str(files("fashion_lab") / name))


CONF_DIR = REPO_DIR / "conf" if FROM_CHECKOUT else _packaged("_conf")
SWEEPS_DIR = REPO_DIR / "sweeps" if FROM_CHECKOUT else _packaged("_sweeps")


EXTRA_SWEEPS_ENV = "FASHION_LAB_SWEEPS_DIR"  # a second folder of sweep files (private spaces, tests)


def sweep_dirs() -> list[Path]:
    """Where sweep files are read from: ``sweeps/`` (the wheel's copy when installed), then
    ``$FASHION_LAB_SWEEPS_DIR`` (same names win)."""
    extra = os.environ.get(EXTRA_SWEEPS_ENV)
    return [SWEEPS_DIR] + ([Path(extra)] if extra else [])


def sweep_files() -> dict[str, Path]:
    """Every sweep file by name."""
    return {p.stem: p for folder in sweep_dirs() for p in sorted(Path(folder).glob("*.yaml"))}


def register_configs() -> None:
    """Register the schema, and every sweep file NAME.yaml as option NAME of the ``sweep`` group.

    Sweep files live at the top level (``sweeps/``) but compose like any config group:
    ``fashion-lab train -m sweep=bn_placement`` is what ``fashion-lab sweep bn_placement`` runs.
    """
    cs = ConfigStore.instance()
    cs.store(name="fashion_lab_schema", node=Config)
    for name, path in sweep_files().items():
        node = OmegaConf.load(path)
        OmegaConf.update(node, "sweep.name", name, force_add=True)
        cs.store(group="sweep", name=name, node=node, package="_global_")


def compose(overrides=(), return_hydra_config: bool = False) -> DictConfig:
    """The config ``fashion-lab train <overrides>`` runs, via Hydra's compose API on ``conf/``."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():  # called from inside a running Hydra command
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides),
                             return_hydra_config=return_hydra_config)


class ConfigError(ValueError):
    """A config value is out of its allowed range; the message names key, value and what is allowed."""


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def validate(cfg: DictConfig) -> None:
    """Check ranges and cross-field rules. Raises ConfigError before any work starts."""
    m, o, t, d = cfg.model, cfg.optimizer, cfg.trainer, cfg.data
    filters = list(m.filters)
    _check(len(filters) >= 1 and all(isinstance(f, int) and f > 0 for f in filters),
           "model.filters", filters, "a non-empty list of positive integers, e.g. [32,64]")
    _check(m.convs_per_stack >= 1, "model.convs_per_stack", m.convs_per_stack, "an integer >= 1")
    _check(m.kernel_size >= 1, "model.kernel_size", m.kernel_size, "an integer >= 1")
    _check(m.dense_units >= 1, "model.dense_units", m.dense_units, "an integer >= 1")
    for key in ("conv_dropout", "dense_dropout"):
        _check(0.0 <= m[key] < 1.0, f"model.{key}", m[key], "0 <= dropout < 1 (0 = off)")
    # Each 2x2 pooling halves the image; 28 px allows at most 4 stacks.
    _check(len(filters) <= 4, "model.filters", filters, "at most 4 stacks for 28x28 images")

    _check(o.learning_rate > 0, "optimizer.learning_rate", o.learning_rate, "a number > 0")
    _check(o.decay >= 0, "optimizer.decay", o.decay, "a number >= 0 (0 = constant rate)")
    name = OptimizerName(o.name).value if not isinstance(o.name, OptimizerName) else o.name.value
    if o.momentum is not None:
        _check(name in ("sgd", "rmsprop"), "optimizer.momentum", o.momentum,
               f"only for optimizer.name sgd or rmsprop (got {name}); leave it null")
        _check(0.0 <= o.momentum < 1.0, "optimizer.momentum", o.momentum, "0 <= momentum < 1")
    if o.nesterov:
        _check(name == "sgd", "optimizer.nesterov", o.nesterov, f"only for optimizer.name sgd (got {name})")
    if o.weight_decay is not None:
        _check(o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay, "a number >= 0")

    _check(t.epochs >= 1, "trainer.epochs", t.epochs, "an integer >= 1")
    _check(t.batch_size >= 1, "trainer.batch_size", t.batch_size, "an integer >= 1")
    _check(t.seed >= 0, "trainer.seed", t.seed, "an integer >= 0")
    _check(t.early_stopping_patience is None or t.early_stopping_patience >= 1,
           "trainer.early_stopping_patience", t.early_stopping_patience, "null (off) or an integer >= 1")
    _check(str(t.verbose) in ("auto", "0", "1", "2"), "trainer.verbose", t.verbose, "auto, 0, 1 or 2")
    _check(t.threads is None or t.threads >= 1, "trainer.threads", t.threads, "null (TF default) or >= 1")

    _check(d.val_samples >= 1, "data.val_samples", d.val_samples, "an integer >= 1")
    _check(d.train_samples is None or d.train_samples >= 10, "data.train_samples", d.train_samples,
           "null (all) or an integer >= 10 (one image per class at least)")
    _check(d.synthetic_train >= 20, "data.synthetic_train", d.synthetic_train, "an integer >= 20")
    _check(d.synthetic_test >= 10, "data.synthetic_test", d.synthetic_test, "an integer >= 10")


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


# Sections that configure a command (search budget, report, UI), not what a run computes.
COMMAND_SECTIONS = ("tuner", "report", "reproduce", "ui")


def run_params(cfg: DictConfig) -> dict[str, Any]:
    """The dotted config a run records as MLflow params: everything but the command sections."""
    return {k: v for k, v in flatten(cfg).items() if k.split(".", 1)[0] not in COMMAND_SECTIONS}
