"""train(cfg) -> RunResult: one validated config in, one Keras run and one MLflow record out."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from fashion_lab.model import tf_settings as _runtime

_runtime.quiet_import()  # before Keras: TensorFlow's start-up lines stay out of the output
import keras  # noqa: E402
import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from fashion_lab.run import plots
from fashion_lab.model import tf_settings as runtime
from fashion_lab.config import config_hash, is_setting, mask_userinfo, override_key, point_name
from fashion_lab.preflight import validate
from fashion_lab.data import Splits, describe_splits, load_data
from fashion_lab.model.network import build_model
from fashion_lab.model.optimizers import build_optimizer, current_learning_rate
from fashion_lab.run.fit_data import fit_data
from fashion_lab.run.tensorboard_logs import tensorboard_logs
from fashion_lab.record.tracking import TAG, Recorder, TrainingDiverged, log_keras_model, provenance_tags, tracked_run


@dataclass
class RunResult:
    run_id: Optional[str]
    metrics: dict[str, float]                  # final: test_accuracy, best_val_accuracy, ...
    history: pd.DataFrame                      # one row per epoch
    model: Any = field(default=None, repr=False)
    pruned: Optional[dict] = None              # {"epoch": N, "reason": ...} when epoch_hook stopped the fit


@dataclass
class WarmStart:
    """Start from an earlier run's weights, numbering epochs on from where it stopped (a Hyperband round)."""
    weights: Path            # a model.weights.h5 of the same network
    initial_epoch: int       # epochs the weights have already trained (Keras' initial_epoch)
    run_id: str              # the run they come from: recorded as the tag fashion_lab.continues


def config_id(cfg) -> str:
    """Same for runs that differ only by seed: groups repeats of one configuration."""
    return config_hash(cfg, with_seed=False)


def default_run_name(cfg, overrides: Sequence[str]) -> str:
    """The run's overrides with short keys (``bn_placement=before lr...``), else model and optimizer."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    keys = [override_key(o) for o in overrides if not is_setting(override_key(o))]
    return point_name(overrides, keys) or f"{cfg.model.name} {getattr(cfg.optimizer.name, 'value', cfg.optimizer.name)}"


class EpochLogger(keras.callbacks.Callback):
    """Logs loss/accuracy/val_*, learning_rate and epoch_seconds at step=epoch, one batch per epoch."""

    def __init__(self, recorder: Recorder):
        super().__init__()
        self.recorder = recorder
        self.epoch_seconds: list[float] = []
        self.learning_rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = current_learning_rate(self.model.optimizer)  # the rate this epoch starts with
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.learning_rates.append(self._lr)
        metrics = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        metrics.update(learning_rate=self._lr, epoch_seconds=seconds)
        self.recorder.metrics(metrics, step=epoch)


class StopWhenAsked(keras.callbacks.Callback):
    """Asks ``hook(epoch, logs)`` after each epoch (a search's pruner); a reason stops the fit there, and
    the run is recorded as what it is: FINISHED with its epochs, tagged pruned (never FAILED)."""

    def __init__(self, hook: Callable[[int, dict], Optional[str]]):
        super().__init__()
        self.hook, self.pruned = hook, None

    def on_epoch_end(self, epoch, logs=None):
        reason = self.hook(epoch, {k: float(v) for k, v in (logs or {}).items()})
        if reason:
            self.pruned = {"epoch": epoch + 1, "reason": str(reason)[:500]}  # counted from 1, as Keras prints
            self.model.stop_training = True


def _pruned_tags(pruned: Optional[dict]) -> dict[str, str]:
    if not pruned:
        return {}
    return {TAG + "pruned": "true", TAG + "pruned_at_epoch": str(pruned["epoch"]), TAG + "pruned_reason": pruned["reason"]}


def _compiled_model(cfg, splits: Splits):
    model = build_model(cfg.model, splits.input_shape, splits.num_classes, precision=cfg.trainer.precision)
    model.compile(optimizer=build_optimizer(cfg.optimizer), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=cfg.trainer.jit_compile)
    return model


class StopOnNaN(keras.callbacks.Callback):
    """Keras' TerminateOnNaN without its print: the run's failure says it in one line (TrainingDiverged)."""

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.model.stop_training = True


def _callbacks(cfg, logger):
    callbacks = [logger, StopOnNaN()]
    if cfg.trainer.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", mode="max", patience=cfg.trainer.early_stopping_patience,
            restore_best_weights=True))
    return callbacks


def evaluate_test(model, splits: Splits, batch_size: int) -> tuple[dict[str, float], np.ndarray]:
    """Test metrics from one pass over the test set, and its confusion matrix."""
    probabilities = model.predict(splits.x_test, batch_size=max(batch_size, 256), verbose=0)
    predicted = probabilities.argmax(axis=1)
    truth = np.asarray(splits.y_test).astype(int)
    picked = np.clip(probabilities[np.arange(len(truth)), truth], 1e-7, 1.0)
    matrix = np.zeros((splits.num_classes, splits.num_classes), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    metrics = {"test_loss": float(-np.log(picked).mean()),
               "test_accuracy": float((predicted == truth).mean())}
    per_class = matrix.diagonal() / np.maximum(matrix.sum(axis=1), 1)
    metrics.update({f"test_accuracy_class_{i}": float(a) for i, a in enumerate(per_class)})
    return metrics, matrix


def _write_artifacts(folder: Path, cfg, model, history: pd.DataFrame, matrix, splits: Splits) -> None:
    (folder / "config.yaml").write_text(mask_userinfo(OmegaConf.to_yaml(cfg, resolve=True)))  # no passwords
    lines: list[str] = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    (folder / "model_summary.txt").write_text("\n".join(lines) + "\n")
    history.to_csv(folder / "history.csv", index_label="epoch")
    pd.DataFrame(matrix, index=splits.class_names, columns=splits.class_names).to_csv(
        folder / "confusion_matrix.csv")
    if cfg.tracking.log_weights:
        model.save_weights(folder / "model.weights.h5")  # the tutorial's save_weights
    if cfg.tracking.log_plots:
        plots.learning_curves(history, folder / "learning_curves.png", title=str(cfg.model.name))
        plots.confusion_matrix(matrix, splits.class_names, folder / "confusion_matrix.png")


def train(cfg, *, overrides: Sequence[str] = (), run_name: Optional[str] = None,
          parent_run_id: Optional[str] = None, tags: Optional[dict[str, str]] = None,
          splits: Optional[Splits] = None, start: Optional[WarmStart] = None,
          epoch_hook: Optional[Callable[[int, dict], Optional[str]]] = None) -> RunResult:
    """Build data, model and optimizer from ``cfg``, fit, evaluate the test set once, record it all.

    ``epoch_hook(epoch, logs)``: asked after each epoch; a returned reason stops training (pruning).
    ``start``: continue ``start.weights`` (with the optimizer's saved state) from epoch
    ``start.initial_epoch`` up to ``trainer.epochs``; epochs keep their absolute numbers."""
    validate(cfg)
    runtime.configure(cfg.trainer)
    splits = splits or load_data(cfg.data)
    run_tags = _run_tags(cfg, overrides, splits, tags, start)
    initial_epoch = _initial_epoch(cfg, start)
    name = run_name or default_run_name(cfg, overrides)
    with tracked_run(cfg, run_name=name, tags=run_tags, parent_run_id=parent_run_id) as recorder, \
            tensorboard_logs(cfg.tracking.tensorboard and recorder.active, name) as board:
        recorder.datasets(describe_splits(splits))  # training, validation and test, as MLflow datasets
        model = _compiled_model(cfg, splits)
        if start:
            # Built first, the optimizer takes its saved state too (step count, momenta, decay), so the
            # run continues the earlier one's training instead of restarting its optimizer.
            model.optimizer.build(model.trainable_variables)
            model.load_weights(start.weights)
        logger = EpochLogger(recorder)
        stopper = [StopWhenAsked(epoch_hook)] if epoch_hook else []
        started = time.perf_counter()
        fitted = model.fit(
            **fit_data(splits, batch_size=cfg.trainer.batch_size, autotune=cfg.data.tf_autotune),
            epochs=cfg.trainer.epochs, initial_epoch=initial_epoch,
            callbacks=_callbacks(cfg, logger) + stopper + board.callbacks, verbose=runtime.keras_verbosity(cfg.trainer.verbose))
        train_seconds = time.perf_counter() - started
        history = _history(cfg, fitted, logger, initial_epoch)
        metrics, matrix = evaluate_test(model, splits, cfg.trainer.batch_size)
        best_epoch = int(history["val_accuracy"].idxmax()) + 1  # counted from 1, as Keras prints epochs
        # epochs_completed: where the weights stand (a continued run counts its earlier run's epochs);
        # epochs_trained: what this run itself paid for.
        metrics.update(best_val_accuracy=float(history["val_accuracy"].max()), best_epoch=best_epoch,
                       epochs_completed=initial_epoch + len(history), epochs_trained=len(history),
                       initial_epoch=initial_epoch, train_seconds=train_seconds,
                       train_images=len(splits.x_train), test_images=len(splits.x_test),
                       param_count=model.count_params())
        recorder.metrics(metrics)
        pruned = stopper[0].pruned if stopper else None
        if pruned:
            recorder.tags(_pruned_tags(pruned))
        if recorder.active:
            _record_artifacts(recorder, board, cfg, model, history, matrix, splits)
        return RunResult(recorder.run_id, metrics, history, model, pruned)


def _initial_epoch(cfg, start: Optional[WarmStart]) -> int:
    """The epoch a run starts from: 0, or where the run it continues stopped (below trainer.epochs)."""
    initial_epoch = start.initial_epoch if start else 0
    if initial_epoch >= cfg.trainer.epochs:
        raise ValueError(f"start.initial_epoch={initial_epoch} is not allowed: below trainer.epochs={cfg.trainer.epochs}, "
                         "the epoch the run trains up to")
    return initial_epoch


def _run_tags(cfg, overrides, splits: Splits, tags: Optional[dict[str, str]], start: Optional[WarmStart]) -> dict:
    """What a run is tagged with: provenance, its data's digest, its config's ids, the caller's, what it continues."""
    run_tags = {**provenance_tags(list(overrides), cfg.trainer.seed),
                TAG + "data_digest": splits.digest, TAG + "config_id": config_id(cfg),
                TAG + "run_key": config_hash(cfg, with_seed=True), **(tags or {})}
    if start:
        run_tags[TAG + "continues"] = start.run_id
    return run_tags


def _history(cfg, fitted, logger: EpochLogger, initial_epoch: int) -> pd.DataFrame:
    """Keras' history per epoch, numbered absolutely, with the learning rate and seconds; a NaN loss raises."""
    history = pd.DataFrame(fitted.history)
    history.index += initial_epoch  # absolute epochs, as the per-epoch metrics' steps
    history["learning_rate"] = logger.learning_rates[:len(history)]
    history["epoch_seconds"] = logger.epoch_seconds[:len(history)]
    if not np.isfinite(history["loss"]).all():  # TerminateOnNaN stopped the fit
        raise TrainingDiverged(f"loss became {history['loss'].iloc[-1]} at epoch {history.index[-1] + 1}; "
                               f"try a smaller optimizer.learning_rate (now {cfg.optimizer.learning_rate})")
    return history


def _record_artifacts(recorder, board, cfg, model, history: pd.DataFrame, matrix, splits: Splits) -> None:
    """The run's files (history, plots, config, weights, TensorBoard logs) and, when asked, the Keras model."""
    with tempfile.TemporaryDirectory(prefix="fashion-lab-") as folder:
        _write_artifacts(Path(folder), cfg, model, history, matrix, splits)
        board.copy_into(Path(folder))
        recorder.artifacts(Path(folder))
    if cfg.tracking.log_model:
        log_keras_model(cfg.tracking, recorder.run_id, model)


def print_result(result: RunResult, stream=sys.stdout) -> None:
    m = result.metrics
    print(f"test_accuracy={m['test_accuracy']:.4f} test_loss={m['test_loss']:.4f} "
          f"best_val_accuracy={m['best_val_accuracy']:.4f} (epoch {m['best_epoch']}) "
          f"train_seconds={m['train_seconds']:.1f}" + (f" run_id={result.run_id}" if result.run_id else ""),
          file=stream)
