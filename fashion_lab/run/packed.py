"""train_packed(cfgs) -> list[RunResult]: K runs that differ only in seed, trained as K towers of one
Keras model in one ``fit`` (``sweep.pack=K``), each recorded as its own run, exactly like ``train``.

Each tower is the single run's compiled model, built right after seeding with its own seed (so the same
initial weights and dropout seeds), with its own optimizer and its own per-seed data order. The packed
loss is the sum of the towers' mean losses: d(sum)/d(tower k's weights) is tower k's own gradient, passed
on unchanged, and each tower's optimizer applies only its own gradients, so the towers never interact.
With ``trainer.deterministic=true`` a packed seed matches the same seed trained alone bit for bit on
the CPU (tests/run/test_packed.py); the one difference in its record is the tag ``packed_with``.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Sequence

from fashion_lab.model import tf_settings as runtime

runtime.quiet_import()
import keras  # noqa: E402
import pandas as pd
import tensorflow as tf
from omegaconf import OmegaConf

from fashion_lab.config import ConfigError, flatten
from fashion_lab.data import describe_splits, load_data
from fashion_lab.model.optimizers import current_learning_rate
from fashion_lab.preflight import validate
from fashion_lab.record.tracking import TAG, TrainingDiverged, tracked_run
from fashion_lab.run.fit_data import dataset
from fashion_lab.run.tensorboard_logs import tensorboard_logs
from fashion_lab.run.train import (EpochLogger, RunResult, _compiled_model, _history, _record_artifacts, _run_tags,
                                   default_run_name, evaluate_test)


class Packed(keras.Model):
    """K towers side by side: input k feeds tower k, output ``t{k}`` is its prediction."""

    def __init__(self, towers, input_shape):
        inputs = [keras.Input(shape=tuple(input_shape), name=f"x{k}") for k in range(len(towers))]
        names = [tower.name for tower in towers]
        for k, tower in enumerate(towers):  # a graph's names are unique; each tower keeps its own name after
            tower.name = f"t{k}_{tower.name}"
        try:
            outputs = {f"t{k}": tower(x) for k, (tower, x) in enumerate(zip(towers, inputs))}
            super().__init__(inputs=inputs, outputs=outputs, name="packed")
        finally:
            for tower, name in zip(towers, names):
                tower.name = name
        self.towers = list(towers)

    @property
    def metrics(self):
        """The towers' own loss and metric trackers (Keras leaves a compiled sub-model's out): reset each epoch."""
        return [m for tower in self.towers for m in tower.metrics]

    def _step(self, data, training: bool):
        """Each tower's loss and metrics exactly as its own ``fit`` computes them (tower k: ``t{k}_...``)."""
        xs, ys = data
        logs, losses = {}, []
        for k, (tower, x, y) in enumerate(zip(self.towers, xs, ys)):
            y_pred = tower(x, training=training)
            losses.append(tower._compute_loss(x=x, y=y, y_pred=y_pred, training=training))
            tower._loss_tracker.update_state(losses[-1], sample_weight=tf.shape(x)[0])
            logs.update({f"t{k}_{name}": value for name, value in tower.compute_metrics(x, y, y_pred).items()})
        return logs, losses

    def train_step(self, data):
        """Keras' step per tower; the sum's gradient is each tower's own, applied by its own optimizer."""
        with tf.GradientTape() as tape:
            logs, losses = self._step(data, training=True)
            # scale_loss: a mixed_float16 tower's loss-scale optimizer unscales what it is given (else identity)
            total = tf.add_n([tower.optimizer.scale_loss(loss) for tower, loss in zip(self.towers, losses)])
        weights = [tower.trainable_weights for tower in self.towers]
        gradients = tape.gradient(total, [w for ws in weights for w in ws])
        first = 0
        for tower, ws in zip(self.towers, weights):
            tower.optimizer.apply_gradients(zip(gradients[first:first + len(ws)], ws))
            first += len(ws)
        return logs

    def test_step(self, data):
        return self._step(data, training=False)[0]


class TowerLogger(EpochLogger):
    """A tower's per-epoch record: its own keys of the packed logs, named as a single run names them."""

    def __init__(self, recorder, tower, k: int):
        super().__init__(recorder)
        self.tower, self.k = tower, k

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = current_learning_rate(self.tower.optimizer)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, tower_logs(logs or {}, self.k))


def tower_logs(logs: dict, k: int) -> dict:
    """``t0_accuracy`` -> ``accuracy``, ``val_t0_loss`` -> ``val_loss``: tower k's logs, single-run names."""
    out, prefix = {}, f"t{k}_"
    for key, value in logs.items():
        val = key.startswith("val_")
        rest = key[len("val_"):] if val else key
        if rest.startswith(prefix):
            out[("val_" if val else "") + rest[len(prefix):]] = value
    return out


def check_pack(cfgs: Sequence) -> None:
    """Packed runs differ only in trainer.seed (distinct), and use nothing a pack cannot do per tower."""
    if not cfgs:
        raise ConfigError("sweep.pack: no runs to pack; give at least 1")
    seeds = [int(c.trainer.seed) for c in cfgs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"sweep.pack: trainer.seed values {seeds} repeat; packed runs need distinct seeds")
    first = _without_seed(cfgs[0])
    for cfg in cfgs[1:]:
        if (other := _without_seed(cfg)) != first:
            key = next(k for k in sorted(set(first) | set(other)) if first.get(k) != other.get(k))
            raise ConfigError(f"sweep.pack: packed runs may differ only in trainer.seed; {key} differs "
                              f"({first.get(key)} vs {other.get(key)})")
    check_settings(cfgs[0], len(cfgs))


def check_settings(cfg, k: int) -> None:
    """What a pack cannot do per tower: stop one tower early, or write one tower's TensorBoard logs."""
    for key, allowed in (("trainer.early_stopping_patience", None), ("tracking.tensorboard", False)):
        if (value := OmegaConf.select(cfg, key)) not in (allowed, 0):
            raise ConfigError(f"sweep.pack={k} with {key}={value} is not supported: one fit trains every "
                              f"tower (give {key}={allowed}, or sweep.pack=1)")


def _without_seed(cfg) -> dict:
    flat = flatten(cfg)
    return {k: v for k, v in flat.items() if k != "trainer.seed" and not k.startswith("sweep.")}


def _towers(cfgs, splits):
    """Each tower built and its data shuffled right after seeding with its seed, as train() does."""
    towers, data = [], []
    for cfg in cfgs:
        keras.utils.set_random_seed(int(cfg.trainer.seed))
        towers.append(_compiled_model(cfg, splits))
        data.append(dataset(splits.x_train, splits.y_train, batch_size=cfg.trainer.batch_size, shuffle=True))
        # Optimizer, loss and metrics built outside the traced step, as fit builds a single model's.
        towers[-1]._symbolic_build(data_batch=(splits.x_train[:1], splits.y_train[:1]))
    return towers, data


def _packed_data(cfg, data: list, splits) -> dict:
    """fit's arguments: the towers' own training batches zipped; every tower sees the same validation set."""
    k = len(data)
    train = tf.data.Dataset.zip(tuple(data)).map(
        lambda *pairs: (tuple(x for x, _ in pairs), tuple(y for _, y in pairs)))
    val = dataset(splits.x_val, splits.y_val, batch_size=cfg.trainer.batch_size, shuffle=False).map(
        lambda x, y: (tuple([x] * k), tuple([y] * k)))
    options = tf.data.Options()
    options.autotune.enabled = False  # as fit_data: the autotuner's thread stalled epochs
    return {"x": train.with_options(options), "validation_data": val.with_options(options), "shuffle": False}


class _Fitted:
    def __init__(self, history: dict):
        self.history = history


def train_packed(cfgs: Sequence, *, overrides: Sequence[Sequence[str]] = (), run_names: Sequence = (),
                 parent_run_id=None, tags=None, splits=None) -> list[RunResult]:
    """Train ``cfgs`` (differing only in trainer.seed) as towers of one model; one recorded run each."""
    cfgs = list(cfgs)
    check_pack(cfgs)
    for cfg in cfgs:
        validate(cfg)
    overrides = list(overrides) or [[] for _ in cfgs]
    runtime.configure(cfgs[0].trainer)  # threads and op determinism; each tower is seeded below
    splits = splits or load_data(cfgs[0].data)
    seeds = ",".join(str(c.trainer.seed) for c in cfgs)
    with contextlib.ExitStack() as stack:
        recorders = []
        for k, cfg in enumerate(cfgs):
            name = (list(run_names)[k] if run_names else None) or default_run_name(cfg, overrides[k])
            run_tags = {**_run_tags(cfg, overrides[k], splits, tags, None), TAG + "packed_with": seeds}
            recorders.append(stack.enter_context(tracked_run(cfg, run_name=name, tags=run_tags,
                                                             parent_run_id=parent_run_id)))
            recorders[-1].datasets(describe_splits(splits))
        return _fit_and_record(cfgs, splits, recorders)


def compiled_packed(cfg, towers, input_shape) -> Packed:
    model = Packed(towers, input_shape)
    model.compile(optimizer="sgd", jit_compile=cfg.trainer.jit_compile)  # unused: the towers' optimizers step
    return model


def _fit_and_record(cfgs, splits, recorders) -> list[RunResult]:
    cfg = cfgs[0]
    towers, data = _towers(cfgs, splits)
    model = compiled_packed(cfg, towers, splits.input_shape)
    loggers = [TowerLogger(r, t, k) for k, (r, t) in enumerate(zip(recorders, towers))]
    started = time.perf_counter()
    fitted = model.fit(**_packed_data(cfg, data, splits), epochs=cfg.trainer.epochs,
                       callbacks=loggers + [keras.callbacks.TerminateOnNaN()],
                       verbose=runtime.keras_verbosity(cfg.trainer.verbose))
    train_seconds = time.perf_counter() - started
    _diverged(cfgs, fitted.history)
    histories = [_tower_history(c, fitted.history, logger, k) for k, (c, logger) in enumerate(zip(cfgs, loggers))]
    results = []
    for c, tower, history, recorder in zip(cfgs, towers, histories, recorders):
        metrics, matrix = evaluate_test(tower, splits, c.trainer.batch_size)
        metrics.update(best_val_accuracy=float(history["val_accuracy"].max()),
                       best_epoch=int(history["val_accuracy"].idxmax()) + 1, epochs_completed=len(history),
                       epochs_trained=len(history), initial_epoch=0, train_seconds=train_seconds,
                       train_images=len(splits.x_train), test_images=len(splits.x_test),
                       param_count=tower.count_params())
        recorder.metrics(metrics)
        if recorder.active:
            with tensorboard_logs(False, "") as board:
                _record_artifacts(recorder, board, c, tower, history, matrix, splits)
        results.append(RunResult(recorder.run_id, metrics, history, tower, None))
    return results


def _diverged(cfgs, history: dict) -> None:
    """One fit trains every tower, so a tower whose loss became NaN stopped them all: the pack fails whole."""
    for k, cfg in enumerate(cfgs):
        losses = tower_logs(history, k)["loss"]
        if len(losses) < cfg.trainer.epochs or not all(math.isfinite(v) for v in losses):
            bad = [c.trainer.seed for i, c in enumerate(cfgs) if not all(map(math.isfinite, tower_logs(history, i)["loss"]))]
            raise TrainingDiverged(f"the pack stopped at epoch {len(losses)}: the loss of seed(s) {bad} became NaN; "
                                   f"try a smaller optimizer.learning_rate (now {cfg.optimizer.learning_rate}) "
                                   "or sweep.pack=1")


def _tower_history(cfg, history: dict, logger: TowerLogger, k: int) -> pd.DataFrame:
    """Tower k's history as train() keeps it (its columns in a single run's order)."""
    own = tower_logs(history, k)
    return _history(cfg, _Fitted({key: own[key] for key in sorted(own)}), logger, 0)
