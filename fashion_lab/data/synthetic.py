"""A synthetic stand-in for Fashion-MNIST: ten noisy, shifted prototypes (fast tests, no files)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from fashion_lab.config import DataName
from fashion_lab.data.files import NUM_CLASSES
from fashion_lab.data.splits import Splits, _splits


# --------------------------------------------------------------------------- synthetic


_PROTOTYPE_SEED = 20240531  # fixed: class k looks the same whatever split_seed is
_SYNTH_VERSION = 1          # part of the digest; bump when the generator changes
_SYNTH_NOISE = 0.2          # noise std: the tutorial CNN reaches ~90% val accuracy in 2 epochs
_SYNTH_SHIFT = 2            # max shift in pixels


def _prototypes() -> np.ndarray:
    """One distinct blocky 28x28 pattern per class (7x7 random grid, 4x upsampled)."""
    rng = np.random.default_rng(_PROTOTYPE_SEED)
    grids = (rng.random((NUM_CLASSES, 7, 7)) < 0.4).astype(np.float32)
    return np.kron(grids, np.ones((4, 4), dtype=np.float32))


def make_synthetic(n: int, seed: int, stream: int = 0,
                   noise: float = _SYNTH_NOISE, max_shift: int = _SYNTH_SHIFT) -> tuple[np.ndarray, np.ndarray]:
    """``n`` balanced labelled images, float32 (n, 28, 28) in [0, 1], labels int64.

    Each image is its class prototype at a random contrast, shifted by up to
    ``max_shift`` pixels, plus Gaussian noise: learnable, but not trivially so.
    ``stream`` separates the training pool from the test set under one seed.
    """
    rng = np.random.default_rng([seed, stream])
    labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    protos = _prototypes()
    contrast = rng.uniform(0.5, 1.0, size=(n, 1, 1)).astype(np.float32)
    images = protos[labels] * contrast
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))
    for i, (dy, dx) in enumerate(shifts):
        images[i] = np.roll(images[i], (dy, dx), axis=(0, 1))
    images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    np.clip(images, 0.0, 1.0, out=images)
    return images, labels


def _load_synthetic(data_cfg: Any) -> Splits:
    seed, n_train, n_test = int(data_cfg.split_seed), int(data_cfg.synthetic_train), int(data_cfg.synthetic_test)
    x, y = make_synthetic(n_train, seed, stream=0)
    x_test, y_test = make_synthetic(n_test, seed, stream=1)
    params = json.dumps([_SYNTH_VERSION, _PROTOTYPE_SEED, _SYNTH_NOISE, _SYNTH_SHIFT, seed, n_train, n_test])
    digest = hashlib.sha256(params.encode()).hexdigest()[:16]
    return _splits(x, y, x_test, y_test, data_cfg, f"synthetic training images (data.synthetic_train={n_train})",
                   digest=digest, source="synthetic", name=DataName.synthetic.value,
                   settings={"generator": "fashion_lab.data.make_synthetic", "version": _SYNTH_VERSION,
                             "data.split_seed": seed, "data.synthetic_train": n_train, "data.synthetic_test": n_test})
