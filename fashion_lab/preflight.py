"""validate(cfg): the range and cross-field rules types can't express, before any work starts.

Each section of the config has its checks; the network's geometry and size come from
model.geometry, data folders from data.files. Raises ConfigError naming key, value and what is
allowed. Importing this module stays cheap: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from omegaconf import DictConfig

from fashion_lab.config.keys import OPTUNA_STRATEGIES, PRUNERS, STRATEGIES, check_known_keys
from fashion_lab.config.schema import ConfigError, _check
from fashion_lab.data.files import check_dir
from fashion_lab.model.geometry import check_geometry, estimate_size
from fashion_lab.model.optimizers import takers

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
MAX_SEEDS = 1_000             # seeds per grid point: a 1 pt effect needs about 25; 1,000 runs per point is plenty
MAX_EXPERIMENT_NAME = 500     # MLflow's own limit (mlflow.utils.validation)
# A registered model's name: MLflow refuses '/' and ':'; a plain name also stays safe in paths and URLs.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,249}")
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev")  # writable-looking to root, never a place for artifacts

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


def check_seeds(seeds: int, max_seeds: int, until_sure: bool) -> None:
    """sweep.seeds and sweep.max_seeds: bounded, and an until-sure sweep's ceiling above its start."""
    _check(1 <= seeds <= MAX_SEEDS, "sweep.seeds", seeds, f"1 to {MAX_SEEDS:,} seeds per point")
    _check(1 <= max_seeds <= MAX_SEEDS, "sweep.max_seeds", max_seeds, f"1 to {MAX_SEEDS:,} seeds per cell")
    _check(not until_sure or max_seeds >= seeds, "sweep.max_seeds", max_seeds,
           f"at least sweep.seeds={seeds}: sweep.until_sure starts at sweep.seeds and adds seeds up to sweep.max_seeds")


def check_race(race: bool, rungs: list, until_sure: bool) -> None:
    """sweep.rungs: increasing epochs from 1; sweep.race not with sweep.until_sure (one sweeper per sweep)."""
    _check(len(rungs) >= 1 and all(isinstance(r, int) and 1 <= r <= MAX_EPOCHS for r in rungs)
           and rungs == sorted(set(rungs)), "sweep.rungs", rungs,
           f"increasing epochs from 1 to {MAX_EPOCHS:,}, e.g. [3,9,25] (clipped to trainer.epochs)")
    _check(not (race and until_sure), "sweep.race", race, "not with sweep.until_sure=true: race at fixed seeds, "
           "or add seeds until sure without racing")


def _check_artifact_location(location) -> None:
    """A local tracking.artifact_location must be a folder on a real file system that can be written."""
    text = str(location)
    if location is None or ("://" in text and not text.startswith("file://")):
        return  # unset, or a server's or a bucket's location: the store decides
    path = Path(text.removeprefix("file://")).expanduser().resolve()
    pseudo = any(path == Path(p) or Path(p) in path.parents for p in PSEUDO_FILE_SYSTEMS)
    _check(not pseudo, "tracking.artifact_location", location,
           f"a folder on a real file system (not under {', '.join(PSEUDO_FILE_SYSTEMS)}) or a remote URI (s3://...)")
    existing = next(p for p in (path, *path.parents) if p.exists())
    _check(existing.is_dir() and os.access(existing, os.W_OK | os.X_OK), "tracking.artifact_location", location,
           f"a folder that can be created and written ({existing} is not a writable folder)")


def is_loopback(host: str) -> bool:
    """True for a name or address only this machine reaches ('' and 0.0.0.0 are every interface)."""
    import ipaddress

    if str(host).strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).strip("[]")).is_loopback
    except ValueError:
        return False


def _check_names(cfg) -> None:
    """Names MLflow stores, and paths it writes to, refused here rather than after a search."""
    tr, tu = cfg.tracking, cfg.tuner
    _check(bool(str(tr.experiment).strip()), "tracking.experiment", tr.experiment, "a non-empty experiment name")
    _check(len(str(tr.experiment)) <= MAX_EXPERIMENT_NAME, "tracking.experiment",
           str(tr.experiment)[:40] + f"... ({len(str(tr.experiment)):,} characters)",
           f"an experiment name of at most {MAX_EXPERIMENT_NAME} characters")
    _check(MODEL_NAME.fullmatch(str(tu.model_name)) is not None, "tuner.model_name", tu.model_name,
           "a registered model name of letters, digits, '.', '_' and '-' (no '/' or ':'), 1 to 250 characters")
    _check_artifact_location(tr.artifact_location)


def _check_commands(cfg) -> None:
    """Settings of the other commands (tuner, report, reproduce, ui), refused even when unused."""
    s, tu, r, rp, ui = cfg.sweep, cfg.tuner, cfg.report, cfg.reproduce, cfg.ui
    for key, strategy in (("sweep.strategy", s.strategy), ("tuner.strategy", tu.strategy)):
        _check(strategy in STRATEGIES, key, strategy, "one of " + ", ".join(STRATEGIES))
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
    _check(ui.allow_remote or is_loopback(ui.host), "ui.host", ui.host, "a loopback host (127.0.0.1, ::1, "
           "localhost): the MLflow UI has no login; to serve it to the network anyway, add ui.allow_remote=true")
    _check(tu.early_stopping_patience is None or 1 <= tu.early_stopping_patience <= MAX_EPOCHS,
           "tuner.early_stopping_patience", tu.early_stopping_patience, f"null (off) or 1 to {MAX_EPOCHS:,}")
    check_seeds(s.seeds, s.max_seeds, s.until_sure)
    check_race(s.race, list(s.rungs), s.until_sure)
    _check_optuna_only(tu)
    _check_names(cfg)


def _check_optuna_only(tu) -> None:
    """Pruning needs Optuna's study: refused with KerasTuner's strategies."""
    _check(tu.pruner in PRUNERS, "tuner.pruner", tu.pruner, "one of " + ", ".join(PRUNERS))
    only = f"only with tuner.strategy {' or '.join(OPTUNA_STRATEGIES)} (Optuna), not {tu.strategy}"
    _check(tu.pruner == "none" or tu.strategy in OPTUNA_STRATEGIES, "tuner.pruner", tu.pruner, only + "; leave it none")
    _check(tu.pruner == "none" or tu.executions_per_trial == 1, "tuner.pruner", tu.pruner,
           f"only with tuner.executions_per_trial=1 (got {tu.executions_per_trial}): a pruner judges one run's epochs")
    for key in ("pruner_startup_trials", "pruner_warmup_epochs"):
        _check(0 <= tu[key] <= MAX_EPOCHS, f"tuner.{key}", tu[key], f"0 to {MAX_EPOCHS:,}")


def _check_optimizer(o) -> None:
    """Rates and decays: finite and in range; momentum and nesterov only for optimizers that take them."""
    # inf (or 1e400, which parses as inf) would create a run, then fail in Keras with a traceback.
    _check(math.isfinite(o.learning_rate) and o.learning_rate > 0, "optimizer.learning_rate", o.learning_rate,
           "a finite number > 0")
    _check(math.isfinite(o.decay) and o.decay >= 0, "optimizer.decay", o.decay,
           "a finite number >= 0 (0 = constant rate)")
    name = str(getattr(o.name, "value", o.name))
    for key, unset in (("momentum", "; leave it null"), ("nesterov", "")):
        if o[key] not in (None, False):  # given: the optimizer must take it (the registry says which do)
            _check(name in takers(key), f"optimizer.{key}", o[key],
                   f"only for optimizer.name {' or '.join(takers(key))} (got {name}){unset}")
    if o.momentum is not None:
        _check(0.0 <= o.momentum < 1.0, "optimizer.momentum", o.momentum, "0 <= momentum < 1")
    if o.weight_decay is not None:
        _check(math.isfinite(o.weight_decay) and o.weight_decay >= 0, "optimizer.weight_decay", o.weight_decay,
               "a finite number >= 0")


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

    _check_optimizer(o)

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
