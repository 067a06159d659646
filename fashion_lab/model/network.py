"""build_model(model_cfg): the tutorial CNN and its variants, from one config.

Defaults give the tutorial's network layer for layer (1,679,082 parameters):
    [Conv(32) -> ReLU -> BN] x2 -> MaxPool 2x2 -> [Conv(64) -> ReLU -> BN] x2 -> MaxPool 2x2
(convs 3x3, stride 1, padding same; pooling stride = pool size)
    -> Flatten -> Dense(512) -> ReLU -> BN -> Dropout(0.5) -> Dense(10) -> softmax
"""

from __future__ import annotations

from fashion_lab.model import tf_settings as _runtime

_runtime.quiet_import()  # before Keras: TensorFlow's start-up lines stay out of the output
import keras  # noqa: E402
from keras import layers, ops

from fashion_lab.config import BNPlacement, Padding, Pooling


@keras.saving.register_keras_serializable(package="fashion_lab")
class L2Pooling2D(layers.Layer):
    """L2-norm pooling: sqrt of the sum of squares over each window (the lecture's third pooling)."""

    def __init__(self, pool_size=2, strides=None, epsilon=1e-7, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.strides = strides or pool_size
        self.epsilon = epsilon  # keeps the gradient finite where ReLU outputs are all zero

    def call(self, inputs):
        window = self.pool_size * self.pool_size
        mean_square = ops.average_pool(ops.square(inputs), self.pool_size, strides=self.strides)
        return ops.sqrt(mean_square * window + self.epsilon)

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape

        def out(size):
            return None if size is None else (size - self.pool_size) // self.strides + 1

        return (n, out(h), out(w), c)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "epsilon": self.epsilon}


def _enum(value, kind):
    return value if isinstance(value, kind) else kind(getattr(value, "value", value))


def _activated(x_layers: list, bn: BNPlacement) -> list:
    """ReLU with batch norm placed as configured (the tutorial puts BN after the activation)."""
    if bn is BNPlacement.before:
        return x_layers + [layers.BatchNormalization(), layers.Activation("relu")]
    if bn is BNPlacement.after:
        return x_layers + [layers.Activation("relu"), layers.BatchNormalization()]
    return x_layers + [layers.Activation("relu")]


def _pooling(model_cfg) -> layers.Layer:
    """The configured pooling; a stride below the window's size overlaps the windows."""
    kind = _enum(model_cfg.pooling, Pooling)
    size, stride = model_cfg.pool_size, model_cfg.pool_stride or model_cfg.pool_size
    if kind is Pooling.max:
        return layers.MaxPooling2D(pool_size=size, strides=stride)
    if kind is Pooling.avg:
        return layers.AveragePooling2D(pool_size=size, strides=stride)
    return L2Pooling2D(pool_size=size, strides=stride)


def build_model(model_cfg, input_shape=(28, 28, 1), num_classes: int = 10,
                precision: str = "float32") -> keras.Model:
    """The CNN described by ``model_cfg`` (a ModelConfig node), uncompiled.

    ``precision`` is a Keras dtype policy (``mixed_bfloat16``: bfloat16 compute, float32 weights).
    Layers take the global policy when they are built, so it is set only while building: nothing
    leaks into the next run of the same process.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(getattr(precision, "value", precision))
    try:
        return _build(model_cfg, input_shape, num_classes)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _build(model_cfg, input_shape, num_classes: int) -> keras.Model:
    bn = _enum(model_cfg.bn_placement, BNPlacement)
    stack: list = [keras.Input(shape=tuple(input_shape))]
    for filters in model_cfg.filters:
        for _ in range(model_cfg.convs_per_stack):
            conv = layers.Conv2D(int(filters), model_cfg.kernel_size, strides=model_cfg.conv_stride,
                                 padding=_enum(model_cfg.conv_padding, Padding).value)
            stack = _activated(stack + [conv], bn)
        stack.append(_pooling(model_cfg))
        if model_cfg.conv_dropout > 0:
            stack.append(layers.Dropout(model_cfg.conv_dropout))
    stack.append(layers.Flatten())
    stack = _activated(stack + [layers.Dense(model_cfg.dense_units)], bn)
    if model_cfg.dense_dropout > 0:
        stack.append(layers.Dropout(model_cfg.dense_dropout))
    # Probabilities in float32 whatever the compute precision: a bf16 softmax rounds them too coarsely.
    stack += [layers.Dense(num_classes), layers.Activation("softmax", dtype="float32")]
    return keras.Sequential(stack, name=str(model_cfg.name))
