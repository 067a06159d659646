"""The optimizers a config can name: what each accepts (the registry), and build_optimizer.

The registry is plain data, read by preflight without TensorFlow; Keras is imported only to build.
Adding an optimizer: one ``OptimizerName`` member (the schema's closed list), one registry entry,
one ``conf/optimizer/NAME.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fashion_lab.model import tf_settings as _runtime


@dataclass(frozen=True)
class OptimizerSpec:
    keras_class: str          # the class in keras.optimizers
    takes: tuple[str, ...]    # optimizer.* keys it accepts beyond learning_rate, decay and weight_decay


OPTIMIZERS = {
    "sgd": OptimizerSpec("SGD", ("momentum", "nesterov")),
    "rmsprop": OptimizerSpec("RMSprop", ("momentum",)),
    "adam": OptimizerSpec("Adam", ()),
    "adamw": OptimizerSpec("AdamW", ()),  # decoupled weight decay
}


def takers(key: str) -> list[str]:
    """The optimizers that accept ``optimizer.<key>``, in registry order."""
    return [name for name, spec in OPTIMIZERS.items() if key in spec.takes]


def _keras():
    _runtime.quiet_import()  # before Keras: TensorFlow's start-up lines stay out of the output
    import keras

    return keras


def legacy_decay_schedule(learning_rate: float, decay: float):
    """Keras 2's ``SGD(decay=...)``, removed in Keras 3: lr_t = lr0 / (1 + decay * t), t = step."""
    return _keras().optimizers.schedules.InverseTimeDecay(
        initial_learning_rate=learning_rate, decay_steps=1, decay_rate=decay, staircase=False)


def build_optimizer(opt_cfg):
    """The Keras optimizer described by ``opt_cfg`` (an OptimizerConfig node)."""
    name = str(getattr(opt_cfg.name, "value", opt_cfg.name))
    spec = OPTIMIZERS[name]
    lr = float(opt_cfg.learning_rate)
    kwargs = {"learning_rate": legacy_decay_schedule(lr, float(opt_cfg.decay)) if opt_cfg.decay > 0 else lr}
    if opt_cfg.weight_decay is not None:
        kwargs["weight_decay"] = float(opt_cfg.weight_decay)
    if "momentum" in spec.takes:
        kwargs["momentum"] = float(opt_cfg.momentum or 0.0)
    if "nesterov" in spec.takes:
        kwargs["nesterov"] = bool(opt_cfg.nesterov)
    return getattr(_keras().optimizers, spec.keras_class)(**kwargs)


def current_learning_rate(optimizer) -> float:
    """The rate the next step will use (evaluates a schedule at the optimizer's step count)."""
    return float(_keras().ops.convert_to_numpy(optimizer.learning_rate))
