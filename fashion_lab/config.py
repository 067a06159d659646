"""Config schemas (dataclasses in Hydra's ConfigStore) and the range checks types can't express.

The YAML files under ``conf/`` hold every default value users see; these schemas
give them types, enums and a closed set of keys, so a typo'd key or a wrong type
fails at composition, before any data is loaded or any run is created.
Importing this module must stay cheap: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf


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


class Padding(enum.Enum):
    same = "same"    # the tutorial: zero-padded, a stride-1 conv keeps the map's size
    valid = "valid"  # no padding: each conv trims kernel_size - 1 pixels


class Precision(enum.Enum):
    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"  # CPUs with AMX / AVX512-BF16, TPUs, recent GPUs
    mixed_float16 = "mixed_float16"    # GPUs (the loss is scaled to keep small gradients)


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
    tf_autotune: bool = False            # tf.data's autotuner: off, since it stalls epochs (see pipeline.py)
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
    conv_stride: int = 1
    conv_padding: Padding = Padding.same
    pooling: Pooling = Pooling.max
    pool_size: int = 2
    pool_stride: Optional[int] = None    # None = pool_size (no overlap); smaller = overlapping pooling
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
    verbose: str = "auto"                  # Keras: auto (bar on a terminal, a line per epoch otherwise), 0, 1, 2;
                                           # debug: 2 plus TensorFlow's own start-up and retracing messages
    jit_compile: bool = False
    threads: Optional[int] = None          # TF intra-op threads; None = TensorFlow's default
    precision: Precision = Precision.float32  # Keras dtype policy; the softmax output stays float32


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"       # relative to the directory the command runs in
    experiment: str = "fashion-lab"
    artifact_location: Optional[str] = None  # None: next to a sqlite store, else the server's default
    run_name: Optional[str] = None
    log_weights: bool = True
    log_plots: bool = True
    tensorboard: bool = False              # TensorBoard logs of each run, as its tensorboard/ artifact
    log_model: bool = False                # the run's model as an MLflow Keras model (model/); searches always
                                           # log and register their best run's
    offline_dir: str = "fashion-lab-offline"  # runs the server could not take are kept here (fashion-lab upload)


@dataclass
class SweepConfig:
    """What a file in ``sweeps/`` adds besides its ``hydra.sweeper.params`` (the dimensions)."""
    name: Optional[str] = None            # the file's name, set when it is registered
    strategy: str = "grid"                # grid (Hydra multirun) | random | bayesian | hyperband (KerasTuner)
    conditions: Dict[str, str] = field(default_factory=dict)  # tuner: key -> "choice=value" it depends on
    seeds: int = 1                        # grid: repeat every point over seeds trainer.seed .. trainer.seed+seeds-1
    until_sure: bool = False              # grid: add seeds to undecided comparisons (hydra/sweeper=until_sure)
    max_seeds: int = 10                   # until_sure: seeds per cell at most
    restart: bool = False                 # true: a new parent run instead of continuing this command's sweep
    # Set by the campaign on each job's command line (so a job on any launcher, or another machine, has them):
    parent_run_id: Optional[str] = None   # the sweep's parent run
    trial: Optional[Any] = None           # KerasTuner sweeper: {trial_id, execution, bracket, ...} of this job
    swept_keys: List[str] = field(default_factory=list)  # what the sweep varies: names its child runs


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
    """KerasTuner search settings (conf/tuner/*.yaml); see fashion_lab/search.py."""
    strategy: str = "random"               # random | bayesian | hyperband | grid
    objective: str = "val_accuracy"        # the MLflow metric name; val_accuracy (max) or val_loss (min)
    max_trials: int = 10                   # not used by hyperband (its schedule decides)
    max_epochs: int = 10                   # hyperband: epochs of the longest round
    factor: int = 3                        # hyperband: reduction factor between rounds
    num_initial_points: Optional[int] = None  # bayesian: random trials before the Gaussian process guides
                                           # (null: KerasTuner's default, 3 x the space's dimensions)
    executions_per_trial: int = 1          # repeats per trial (seeds trainer.seed + i), objective averaged
    early_stopping_patience: Optional[int] = None  # applied as trainer.early_stopping_patience in trials
    directory: str = "outputs/tuner"       # tuner state: <directory>/<project>/
    project: Optional[str] = None          # defaults to the sweep name
    overwrite: bool = False                # true: discard the saved search and start over
    seed: int = 0                          # the oracle's sampling seed
    model_name: str = "fashion-lab-cnn"    # MLflow Model Registry name of the best model
    register_min_accuracy: float = 0.5     # a best run below this test accuracy is registered with a
                                           # fashion_lab.warning tag (chance is 0.10; the tutorial ~0.90)
    max_consecutive_failed_trials: int = 3
    parallel_trials: int = 1               # trials asked of the oracle and launched together (one batch)
    fresh_process: bool = True             # each trial trains in a new process: memory stays bounded
                                           # (false: in the search process, a few s faster per trial,
                                           # but TensorFlow keeps ~16 MB per trial)
    continue_rounds: bool = True           # hyperband: a promoted round starts from the recorded weights of
                                           # its previous round (false: every round trains from scratch)
    trials_per_worker: int = 10            # with fresh_process: trials per warm worker (TensorFlow imported
                                           # once) before it is replaced; 1 = a new process per trial


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


# A sweep file is code: Hydra instantiates any ``_target_`` it names (a hydra.callbacks entry runs
# at start-up). Only fashion-lab's own classes may be named; a file that names others is refused.
OWN_TARGETS = ("fashion_lab.",)
REFUSED_SWEEPS: dict[str, str] = {}  # name -> why, filled by register_configs


def sweep_code(node, prefix: str = "") -> Optional[str]:
    """The first ``_target_`` in a sweep file that is not fashion-lab's own, as a message; else None."""
    if isinstance(node, DictConfig):
        items = [(str(k), node._get_node(k)) for k in node.keys()]
    elif isinstance(node, ListConfig):
        items = [(str(i), node._get_node(i)) for i in range(len(node))]
    else:
        return None
    for key, child in items:
        dotted = f"{prefix}{key}"
        if key == "_target_" and not str(child._value()).startswith(OWN_TARGETS):
            return (f"{dotted}={child._value()!r} is not allowed: a sweep file may name no code to run "
                    f"(_target_, hydra.callbacks) apart from fashion-lab's own ({OWN_TARGETS[0]}*)")
        problem = sweep_code(child, dotted + ".")
        if problem:
            return problem
    return None


def register_configs() -> None:
    """Register the schema, and every sweep file NAME.yaml as option NAME of the ``sweep`` group.

    Sweep files live at the top level (``sweeps/``) but compose like any config group:
    ``fashion-lab train -m sweep=bn_placement`` is what ``fashion-lab sweep bn_placement`` runs.
    """
    cs = ConfigStore.instance()
    cs.store(name="fashion_lab_schema", node=Config)
    REFUSED_SWEEPS.clear()
    for name, path in sweep_files().items():
        node = OmegaConf.load(path)
        problem = sweep_code(node)
        if problem:  # never registered: nothing can compose it
            REFUSED_SWEEPS[name] = f"sweep={name}: {path} is refused: {problem}"
            continue
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


# --- bounds beyond the types (README "Limits") ---------------------------------------------------
# Upper bounds are far above anything useful for 28x28 images; they exist so a typo (an extra
# zero, a pasted timestamp) is refused in one line instead of running for days or exhausting memory.

SEED_MAX = 2**32 - 1          # numpy's seed range
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 65_536
MAX_FILTERS = 4_096           # per conv layer
MAX_CONVS_PER_STACK = 16
MAX_DENSE_UNITS = 65_536
MAX_THREADS = 1_024
MAX_PARAMS = 100_000_000      # the tutorial network has 1.7 M
MEMORY_SHARE = 0.5            # a run may plan to use at most this share of the machine's memory
MAX_SYNTHETIC = 200_000       # images generated per split for data=synthetic
FASHION_MNIST_TRAIN = 60_000  # training images before the validation hold-out
MIN_TRAIN_IMAGES = 10         # one per class at least
MAX_TRIALS = 100_000
MAX_EXECUTIONS = 100

SWEEP_STRATEGIES = ("grid", "random", "bayesian", "hyperband")
TUNER_STRATEGIES = ("random", "bayesian", "hyperband", "grid")
# Every metric a run records (report.metric orders the leaderboard by one of them).
METRICS = ("best_val_accuracy", "test_accuracy", "test_loss", "val_accuracy", "val_loss", "accuracy", "loss",
           "best_epoch", "epochs_completed", "train_seconds", "param_count", "learning_rate", "epoch_seconds",
           "epochs_trained", "initial_epoch", "train_images", "test_images",
           *(f"test_accuracy_class_{i}" for i in range(10)))


def machine_memory() -> int:
    """Bytes of memory this process may use: physical memory, or a lower cgroup limit."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def estimate_size(model_cfg, batch_size: int, image: int = 28) -> tuple[int, int]:
    """(parameters, bytes to train) of the configured CNN, from the config alone (no TensorFlow).

    Mirrors model.build_model: same-padded convs, each stack ends in a 2x2 pooling. Training
    memory counts float32 weights four times (weights, gradients, two optimizer slots) and each
    activation twice per image in a batch (the forward value and its gradient).
    """
    bn = str(getattr(model_cfg.bn_placement, "value", model_cfg.bn_placement)) != "none"
    side, channels, params, activations = image, 1, 0, 0
    k = int(model_cfg.kernel_size)
    for filters in model_cfg.filters:
        for _ in range(int(model_cfg.convs_per_stack)):
            params += k * k * channels * filters + filters + (4 * filters if bn else 0)
            activations += side * side * filters * (3 if bn else 2)  # conv, relu, bn outputs
            channels = filters
        side = max(1, side // 2)
        activations += side * side * channels
    units = int(model_cfg.dense_units)
    params += side * side * channels * units + units + (4 * units if bn else 0) + units * 10 + 10
    activations += units * 3 + 20
    return params, 4 * (4 * params + 2 * activations * int(batch_size))


def _check_size(cfg) -> None:
    m, t = cfg.model, cfg.trainer
    params, needed = estimate_size(m, t.batch_size)
    memory = machine_memory()
    if params <= MAX_PARAMS and needed <= MEMORY_SHARE * memory:
        return
    gb = 1024 ** 3
    raise ConfigError(
        f"model.filters={list(m.filters)!r} (with model.convs_per_stack={m.convs_per_stack}, "
        f"model.dense_units={m.dense_units}, trainer.batch_size={t.batch_size}) is not allowed: "
        f"~{params:,} parameters, ~{needed / gb:,.1f} GB to train; the bound is {MAX_PARAMS:,} parameters "
        f"and {MEMORY_SHARE:.0%} of this machine's {memory / gb:,.0f} GB")


def _check_data_sizes(d) -> None:
    """Sizes against the data a run will load: known from the config for every data set."""
    name = str(getattr(d.name, "value", d.name))
    if name == "synthetic":
        pool, where = int(d.synthetic_train), f"data.synthetic_train={d.synthetic_train} synthetic training images"
    else:
        pool, where = FASHION_MNIST_TRAIN, f"{FASHION_MNIST_TRAIN} Fashion-MNIST training images"
    _check(d.val_samples <= pool - MIN_TRAIN_IMAGES, "data.val_samples", d.val_samples,
           f"at most {pool - MIN_TRAIN_IMAGES}: there are {where} and {MIN_TRAIN_IMAGES} must remain for training")
    if d.train_samples is not None:
        _check(d.val_samples + d.train_samples <= pool, "data.train_samples", d.train_samples,
               f"at most {pool - d.val_samples}: {where} minus data.val_samples={d.val_samples}")
    _check(name == "fashion_mnist" or not d.dir, "data.dir", d.dir,
           "only with data.name=fashion_mnist; synthetic images are generated, no files are read (leave it null)")
    if name == "fashion_mnist" and d.dir:
        problem = check_dir(d.dir)
        _check(problem is None, "data.dir", d.dir, f"{problem}; give a directory holding the four Fashion-MNIST "
               f".gz files, or leave data.dir null to search $FASHION_MNIST_DIR, the Debian package and "
               f"the Keras cache")


def _check_commands(cfg) -> None:
    """Settings of the other commands (tuner, report, reproduce, ui), refused even when unused."""
    s, tu, r, rp, ui = cfg.sweep, cfg.tuner, cfg.report, cfg.reproduce, cfg.ui
    _check(s.strategy in SWEEP_STRATEGIES, "sweep.strategy", s.strategy, "one of " + ", ".join(SWEEP_STRATEGIES))
    _check(tu.strategy in TUNER_STRATEGIES, "tuner.strategy", tu.strategy, "one of " + ", ".join(TUNER_STRATEGIES))
    # KerasTuner is given seed + 1 (tuner_fixes.oracle_seed), which must stay in NumPy's range.
    _check(0 <= tu.seed < SEED_MAX, "tuner.seed", tu.seed, f"an integer from 0 to {SEED_MAX - 1}")
    _check(1 <= tu.max_trials <= MAX_TRIALS, "tuner.max_trials", tu.max_trials, f"1 to {MAX_TRIALS:,}")
    _check(1 <= tu.max_epochs <= MAX_EPOCHS, "tuner.max_epochs", tu.max_epochs, f"1 to {MAX_EPOCHS:,}")
    _check(tu.num_initial_points is None or 1 <= tu.num_initial_points <= MAX_TRIALS, "tuner.num_initial_points",
           tu.num_initial_points, f"null (3 x the space's dimensions) or 1 to {MAX_TRIALS:,}")
    _check(1 <= tu.executions_per_trial <= MAX_EXECUTIONS, "tuner.executions_per_trial",
           tu.executions_per_trial, f"1 to {MAX_EXECUTIONS}")
    _check(1 <= tu.trials_per_worker <= MAX_TRIALS, "tuner.trials_per_worker", tu.trials_per_worker,
           f"1 to {MAX_TRIALS:,} (1 = a new process per trial)")
    _check(0 <= tu.register_min_accuracy <= 1, "tuner.register_min_accuracy", tu.register_min_accuracy,
           "0 to 1 (a test accuracy)")
    _check(r.metric in METRICS, "report.metric", r.metric, "a recorded metric: " + ", ".join(
           m for m in METRICS if not m.startswith("test_accuracy_class_")) + ", test_accuracy_class_0..9")
    _check(rp.tolerance >= 0 and rp.tolerance == rp.tolerance, "reproduce.tolerance", rp.tolerance,
           "a number >= 0 (0 = exact)")
    _check(1 <= ui.port <= 65535, "ui.port", ui.port, "a TCP port from 1 to 65535")
    _check(1 <= ui.workers <= 64, "ui.workers", ui.workers, "1 to 64")
    _check(bool(str(cfg.tracking.experiment).strip()), "tracking.experiment", cfg.tracking.experiment,
           "a non-empty experiment name")


# The four Fashion-MNIST files: data.dir is checked here, before TensorFlow or any run.
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def missing_data_files(directory: Path) -> list[str]:
    return [name for name in FILES.values() if not (directory / name).is_file()]


def describe_data_dir(directory: Path) -> str:
    if not directory.is_dir():
        return "does not exist"
    missing = missing_data_files(directory)
    return "missing " + ", ".join(missing) if missing else "complete"


def check_dir(directory: Any) -> Optional[str]:
    """None when ``directory`` holds the four files; else what is wrong with it (for data.dir)."""
    path = Path(str(directory)).expanduser()
    state = describe_data_dir(path)
    return None if state == "complete" else f"{path} {state}"


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
    check_geometry(m)

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
    _check(str(t.verbose) in ("auto", "0", "1", "2", "debug"), "trainer.verbose", t.verbose, "auto, 0, 1, 2 or debug")
    _check(t.threads is None or t.threads >= 1, "trainer.threads", t.threads, "null (TF default) or >= 1")

    _check(d.val_samples >= 1, "data.val_samples", d.val_samples, "an integer >= 1")
    _check(d.train_samples is None or d.train_samples >= 10, "data.train_samples", d.train_samples,
           "null (all) or an integer >= 10 (one image per class at least)")
    _check(d.synthetic_train >= 20, "data.synthetic_train", d.synthetic_train, "an integer >= 20")
    _check(d.synthetic_test >= 10, "data.synthetic_test", d.synthetic_test, "an integer >= 10")

    # Beyond the schema: seeds in numpy's range, sane upper bounds, sizes against the data and memory.
    for key, seed in (("trainer.seed", t.seed), ("data.split_seed", d.split_seed)):
        _check(0 <= seed <= SEED_MAX, key, seed, f"an integer from 0 to {SEED_MAX}")
    _check(t.epochs <= MAX_EPOCHS, "trainer.epochs", t.epochs, f"1 to {MAX_EPOCHS:,}")
    _check(t.batch_size <= MAX_BATCH_SIZE, "trainer.batch_size", t.batch_size, f"1 to {MAX_BATCH_SIZE:,}")
    _check(t.threads is None or t.threads <= MAX_THREADS, "trainer.threads", t.threads, f"1 to {MAX_THREADS}")
    _check(t.early_stopping_patience is None or t.early_stopping_patience <= MAX_EPOCHS,
           "trainer.early_stopping_patience", t.early_stopping_patience, f"null or 1 to {MAX_EPOCHS:,}")
    _check(all(f <= MAX_FILTERS for f in filters), "model.filters", filters,
           f"at most {MAX_FILTERS:,} filters per layer")
    _check(m.convs_per_stack <= MAX_CONVS_PER_STACK, "model.convs_per_stack", m.convs_per_stack,
           f"1 to {MAX_CONVS_PER_STACK}")
    _check(m.dense_units <= MAX_DENSE_UNITS, "model.dense_units", m.dense_units, f"1 to {MAX_DENSE_UNITS:,}")
    _check(d.synthetic_train <= MAX_SYNTHETIC, "data.synthetic_train", d.synthetic_train,
           f"20 to {MAX_SYNTHETIC:,}")
    _check(d.synthetic_test <= MAX_SYNTHETIC, "data.synthetic_test", d.synthetic_test, f"10 to {MAX_SYNTHETIC:,}")
    _check_data_sizes(d)
    _check_size(cfg)
    _check_commands(cfg)
    check_known_keys(cfg)


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
        if part not in node:
            break
        node = node._get_node(part)
    else:
        return None
    known = schema_keys() + group_names()
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else "; `fashion-lab train --help` lists every key"
    return f"unknown key {key!r}: not in the config schema (adding it with + does not make it known){hint}"


def check_overrides(overrides) -> None:
    """Refuse command-line overrides of unknown keys (with or without +/++/~) before Hydra composes."""
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


# --- geometry: every conv and pooling layer against the map it receives ------------------------

INPUT_SIZE = 28  # Fashion-MNIST and the synthetic data are 28x28; data.py checks the arrays it loads


def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Keras' output size of a conv (or pooling) window along one axis."""
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


def check_geometry(m, input_size: int = INPUT_SIZE) -> list[int]:
    """Walk the feature maps from the input: no conv kernel or pooling window may be larger than
    the map it slides over, so no map shrinks below 1x1. Returns the map size after each layer;
    raises ConfigError naming the window's key, with the sizes that led there."""
    for key in ("conv_stride", "pool_size"):
        _check(m[key] >= 1, f"model.{key}", m[key], "an integer >= 1")
    _check(m.pool_stride is None or m.pool_stride >= 1, "model.pool_stride", m.pool_stride,
           "null (= model.pool_size) or an integer >= 1")
    padding = getattr(m.conv_padding, "value", m.conv_padding)
    pool_stride = m.pool_stride or m.pool_size
    sizes = [input_size]

    def fits(key: str, window: int, layer: str) -> None:
        size = sizes[-1]
        _check(window <= size, f"model.{key}", window,
               f"{layer} gets a {size}x{size} map ({' -> '.join(f'{s}x{s}' for s in sizes)}); at most {size} "
               f"there, or fewer stacks (model.filters), a smaller model.conv_stride or model.pool_size, "
               f"or model.conv_padding=same")

    for stack in range(1, len(m.filters) + 1):
        for conv in range(1, m.convs_per_stack + 1):
            fits("kernel_size", m.kernel_size, f"conv {conv} of stack {stack}")
            sizes.append(_conv_out(sizes[-1], m.kernel_size, m.conv_stride, padding))
        fits("pool_size", m.pool_size, f"the pooling of stack {stack}")
        sizes.append(_conv_out(sizes[-1], m.pool_size, pool_stride, "valid"))  # Keras pooling pads nothing
    return sizes


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


# Keys that configure a command (search budget, report, UI) or a sweep's plumbing: not recorded as params.
# What a sweep's jobs get on their command line from the campaign (and sweep.restart): neither recorded nor computed.
SWEEP_PLUMBING = ("sweep.restart", "sweep.parent_run_id", "sweep.trial", "sweep.swept_keys")
# (sweep.parent_run_id is recorded as a param too: a job's own config names its parent.)
COMMAND_KEYS = ("tuner", "report", "reproduce", "ui", "sweep.restart", "sweep.trial", "sweep.swept_keys")
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
    return {k: v for k, v in flatten(cfg).items() if not _under(k, COMMAND_KEYS)}


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


def check_space(cfg: DictConfig, dims) -> None:
    """Every search-space entry names a known key or group, and each end of its range (each choice)
    passes ``validate`` on ``cfg``: refused before the first trial, not by every trial."""
    import copy

    import yaml

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
