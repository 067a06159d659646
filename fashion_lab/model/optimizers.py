"""build_optimizer(opt_cfg): Keras 3 optimizers from config, with the tutorial's legacy decay."""

from __future__ import annotations

from fashion_lab.model import tf_settings as _runtime

_runtime.quiet_import()  # before Keras: TensorFlow's start-up lines stay out of the output
import keras  # noqa: E402

from fashion_lab.config import OptimizerName


def legacy_decay_schedule(learning_rate: float, decay: float) -> keras.optimizers.schedules.LearningRateSchedule:
    """Keras 2's ``SGD(decay=...)``, removed in Keras 3: lr_t = lr0 / (1 + decay * t), t = step."""
    return keras.optimizers.schedules.InverseTimeDecay(
        initial_learning_rate=learning_rate, decay_steps=1, decay_rate=decay, staircase=False)


def build_optimizer(opt_cfg) -> keras.optimizers.Optimizer:
    """The optimizer described by ``opt_cfg`` (an OptimizerConfig node)."""
    name = OptimizerName(getattr(opt_cfg.name, "value", opt_cfg.name))
    lr = float(opt_cfg.learning_rate)
    rate = legacy_decay_schedule(lr, float(opt_cfg.decay)) if opt_cfg.decay > 0 else lr
    common = {"learning_rate": rate}
    if opt_cfg.weight_decay is not None:
        common["weight_decay"] = float(opt_cfg.weight_decay)
    momentum = float(opt_cfg.momentum or 0.0)
    if name is OptimizerName.sgd:
        return keras.optimizers.SGD(momentum=momentum, nesterov=bool(opt_cfg.nesterov), **common)
    if name is OptimizerName.rmsprop:
        return keras.optimizers.RMSprop(momentum=momentum, **common)
    if name is OptimizerName.adamw:
        return keras.optimizers.AdamW(**common)
    return keras.optimizers.Adam(**common)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    """The rate the next step will use (evaluates a schedule at the optimizer's step count)."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))
