"""The network's shape from the config alone (no TensorFlow): map sizes, parameters, training memory.

One walk over the layers build_model makes (``walk``) serves both the geometry check and the
size estimate, so the memory bound sees the same stride, padding and pooling as the network.
"""

from __future__ import annotations

from dataclasses import dataclass

from fashion_lab.config.schema import _check

INPUT_SIZE = 28  # Fashion-MNIST and the synthetic data are 28x28; data.py checks the arrays it loads


@dataclass(frozen=True)
class Window:
    """One conv or pooling layer: its sliding window and the square maps it gets and gives."""
    kind: str          # conv | pool
    key: str           # the config key of its window: model.kernel_size or model.pool_size
    layer: str         # "conv 1 of stack 2", "the pooling of stack 1"
    window: int
    size_in: int
    size_out: int
    channels_in: int
    channels_out: int


def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    """Keras' output size of a conv (or pooling) window along one axis."""
    return -(-size // stride) if padding == "same" else (size - kernel) // stride + 1


def walk(m, input_size: int = INPUT_SIZE) -> list[Window]:
    """Every conv and pooling layer of the configured network, in order, as build_model stacks them."""
    padding = getattr(m.conv_padding, "value", m.conv_padding)
    pool_stride = m.pool_stride or m.pool_size
    size, channels, windows = input_size, 1, []
    for stack, filters in enumerate(m.filters, start=1):
        for conv in range(1, m.convs_per_stack + 1):
            out = _conv_out(size, m.kernel_size, m.conv_stride, padding)
            windows.append(Window("conv", "kernel_size", f"conv {conv} of stack {stack}", m.kernel_size,
                                  size, out, channels, int(filters)))
            size, channels = out, int(filters)
        out = _conv_out(size, m.pool_size, pool_stride, "valid")  # Keras pooling pads nothing
        windows.append(Window("pool", "pool_size", f"the pooling of stack {stack}", m.pool_size,
                              size, out, channels, channels))
        size = out
    return windows


def check_geometry(m, input_size: int = INPUT_SIZE) -> list[int]:
    """No conv kernel or pooling window may be larger than the map it slides over, so no map shrinks
    below 1x1. Returns the map size after each layer; raises ConfigError naming the window's key,
    with the sizes that led there."""
    for key in ("conv_stride", "pool_size"):
        _check(m[key] >= 1, f"model.{key}", m[key], "an integer >= 1")
    _check(m.pool_stride is None or m.pool_stride >= 1, "model.pool_stride", m.pool_stride,
           "null (= model.pool_size) or an integer >= 1")
    sizes = [input_size]
    for w in walk(m, input_size):
        _check(w.window <= w.size_in, f"model.{w.key}", w.window,
               f"{w.layer} gets a {w.size_in}x{w.size_in} map ({' -> '.join(f'{s}x{s}' for s in sizes)}); at most "
               f"{w.size_in} there, or fewer stacks (model.filters), a smaller model.conv_stride or model.pool_size, "
               f"or model.conv_padding=same")
        sizes.append(w.size_out)
    return sizes


def estimate_size(model_cfg, batch_size: int, image: int = INPUT_SIZE) -> tuple[int, int]:
    """(parameters, bytes to train) of the configured CNN, from the config alone (no TensorFlow).

    Parameters are exact (Keras' count_params). Training memory counts float32 weights four times
    (weights, gradients, two optimizer slots) and each activation twice per image in a batch (the
    forward value and its gradient).
    """
    bn = str(getattr(model_cfg.bn_placement, "value", model_cfg.bn_placement)) != "none"
    per_bn = 4 if bn else 0  # gamma, beta and the two moving statistics
    params = activations = 0
    side, channels = image, 1
    for w in walk(model_cfg, image):
        side, channels = max(1, w.size_out), w.channels_out
        if w.kind == "conv":
            params += w.window * w.window * w.channels_in * channels + channels + per_bn * channels
            activations += side * side * channels * (3 if bn else 2)  # conv, relu, bn outputs
        else:
            activations += side * side * channels
    units = int(model_cfg.dense_units)
    params += side * side * channels * units + units + per_bn * units + units * 10 + 10
    activations += units * 3 + 20
    return params, 4 * (4 * params + 2 * activations * int(batch_size))
