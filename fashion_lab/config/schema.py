"""The config schema: dataclasses in Hydra's ConfigStore, enums, and the one error type.

The YAML files under ``conf/`` hold the default values users see; these schemas give them
types, enums and a closed set of keys, so a typo'd key or a wrong type fails at composition,
before any data is loaded or any run is created. Each default lives in one place: ``MISSING``
here where every option of the group states the value in conf/; a value here only where no option
needs its own (a knob some options use, plumbing), and then no YAML repeats it. Imports nothing
of fashion-lab's (but omegaconf's MISSING).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


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
    name: DataName = MISSING
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
    name: str = MISSING
    filters: List[int] = MISSING
    convs_per_stack: int = MISSING
    kernel_size: int = MISSING
    bn_placement: BNPlacement = MISSING
    conv_dropout: float = MISSING
    conv_stride: int = MISSING
    conv_padding: Padding = MISSING
    pooling: Pooling = MISSING
    pool_size: int = MISSING
    pool_stride: Optional[int] = MISSING  # None = pool_size (no overlap); smaller = overlapping pooling
    dense_units: int = MISSING
    dense_dropout: float = MISSING


@dataclass
class OptimizerConfig:
    # Neutral defaults: each conf/optimizer/*.yaml states its own values, and
    # switching optimizer=adam must not inherit SGD's momentum.
    name: OptimizerName = MISSING
    learning_rate: float = MISSING
    momentum: Optional[float] = None      # sgd, rmsprop
    nesterov: bool = False                # sgd only
    weight_decay: Optional[float] = None  # decoupled decay (adamw); L2-style elsewhere
    decay: float = 0.0                    # legacy Keras 2 per-step inverse-time decay: lr0 / (1 + decay * step)


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    deterministic: bool = MISSING          # TF op determinism: bit-identical reruns, slower
    early_stopping_patience: Optional[int] = MISSING  # epochs without val_accuracy gain; None = off
    verbose: str = MISSING                 # Keras: auto (bar on a terminal, a line per epoch otherwise), 0, 1, 2;
                                           # debug: 2 plus TensorFlow's own start-up and retracing messages
    jit_compile: bool = False
    threads: Optional[int] = None          # TF intra-op threads; None = TensorFlow's default
    precision: Precision = MISSING         # Keras dtype policy; the softmax output stays float32


@dataclass
class TrackingConfig:
    enabled: bool = MISSING
    uri: str = MISSING                     # relative to the directory the command runs in
    experiment: str = MISSING
    artifact_location: Optional[str] = None  # None: next to a sqlite store, else the server's default
    run_name: Optional[str] = None
    log_weights: bool = True
    log_plots: bool = True
    tensorboard: bool = MISSING            # TensorBoard logs of each run, as its tensorboard/ artifact
    log_model: bool = MISSING              # the run's model as an MLflow Keras model (model/); searches always
                                           # log and register their best run's
    offline_dir: str = "fashion-lab-offline"  # runs the server could not take are kept here (fashion-lab upload)


@dataclass
class SweepConfig:
    """What a file in ``sweeps/`` adds besides its ``hydra.sweeper.params`` (the dimensions)."""
    name: Optional[str] = None            # the file's name, set when it is registered
    strategy: str = "grid"                # grid (Hydra multirun) | random | bayesian | hyperband (KerasTuner) | tpe | cmaes (Optuna)
    conditions: Dict[str, str] = field(default_factory=dict)  # tuner: key -> "choice=value" it depends on
    seeds: int = 1                        # grid: repeat every point over seeds trainer.seed .. trainer.seed+seeds-1
    until_sure: bool = False              # grid: add seeds to undecided comparisons (hydra/sweeper=until_sure)
    max_seeds: int = 10                   # until_sure: seeds per cell at most
    race: bool = False                    # grid: train in rungs, stop arms worse than another (hydra/sweeper=race)
    rungs: List[int] = field(default_factory=lambda: [3, 9, 25])  # race: epochs of each rung, clipped to trainer.epochs
    restart: bool = False                 # true: a new parent run instead of continuing this command's sweep
    plan: bool = False                    # grid: print the plan (runs, time, what it can detect); train nothing
    pack: int = 1                         # grid: train K seeds of a point as K towers of one model, one fit (a GPU's gain)
    # Set by the campaign on each job's command line (so a job on any launcher, or another machine, has them):
    parent_run_id: Optional[str] = None   # the sweep's parent run
    trial: Optional[Any] = None           # KerasTuner sweeper: {trial_id, execution, bracket, ...} of this job
    swept_keys: List[str] = field(default_factory=list)  # what the sweep varies: names its child runs
    continues_run: Optional[str] = None   # race sweeper: the run of the previous rung whose weights this job continues
    pack_seeds: List[int] = field(default_factory=list)  # sweep.pack: the seeds this job trains packed
    initial_points: List[Any] = field(default_factory=list)  # tuner: {key: value} maps tried after the base


@dataclass
class ReportConfig:
    """``fashion-lab report``: which runs, where the files go."""
    sweep: Optional[str] = MISSING        # sweep/search name or parent run id; None = the latest sweep
    experiment: Optional[str] = MISSING   # None = tracking.experiment
    out: Optional[str] = MISSING          # None = reports/<sweep name>
    metric: str = MISSING                 # leaderboard order (test_accuracy shown beside it)


@dataclass
class ReproduceConfig:
    """``fashion-lab reproduce RUN_ID``: allowed difference of each final metric (0 = exact)."""
    tolerance: float = MISSING


@dataclass
class UIConfig:
    """``fashion-lab ui``: where the MLflow UI listens (localhost only by default)."""
    host: str = MISSING
    port: int = MISSING
    workers: int = MISSING                # uvicorn workers; one is plenty for a local UI and starts fastest
    allow_remote: bool = MISSING          # true: a host other than loopback (the UI has no login: anyone who
                                          # reaches the port reads and changes the store)


@dataclass
class TunerConfig:
    """Search settings (conf/tuner/*.yaml); see fashion_lab/search/study.py."""
    strategy: str = MISSING                # random | bayesian | hyperband | grid (KerasTuner) | tpe | cmaes (Optuna)
    objective: str = "val_accuracy"        # the MLflow metric name; val_accuracy (max) or val_loss (min)
    max_trials: int = 10                   # not used by hyperband (its schedule decides)
    max_epochs: int = 10                   # hyperband: epochs of the longest round
    factor: int = 3                        # hyperband: reduction factor between rounds
    num_initial_points: Optional[int] = None  # bayesian: random trials before the Gaussian process guides
                                           # (null: KerasTuner's default, 3 x the space's dimensions);
                                           # tpe: Optuna's n_startup_trials (null: Optuna's default, 10)
    warm_start: bool = MISSING             # the first trial is the base configuration, clipped into the space
    seed_from_store: bool = False          # a new search counts the store's finished runs in its space as
                                           # completed trials, not trained again (search/seeding.py)
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
    parallel_trials: int = 1               # trials at a time: lanes, each asks for a trial when its last ended
                                           # (search/lanes.py; one batch on the basic launcher)
    fresh_process: bool = True             # each trial trains in a new process: memory stays bounded
                                           # (false: in the search process, a few s faster per trial,
                                           # but TensorFlow keeps ~16 MB per trial)
    continue_rounds: bool = True           # hyperband: a promoted round starts from the recorded weights of
                                           # its previous round (false: every round trains from scratch)
    pruner: str = "none"                   # none | median | wilcoxon: stop a trial's epochs on its intermediate
                                           # values (Optuna strategies only: tpe, cmaes)
    pruner_startup_trials: int = 5         # median: completed trials before any trial is pruned
    pruner_warmup_epochs: int = 0          # epochs of each trial never pruned (median and wilcoxon)
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


class ConfigError(ValueError):
    """A config value is out of its allowed range; the message names key, value and what is allowed."""


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")
