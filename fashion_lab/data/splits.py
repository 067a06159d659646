"""Seeded, stratified train/validation splits of the training images, and the Splits they make."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np

from fashion_lab.data.files import CLASS_NAMES, DataError, IMAGE_SHAPE, NUM_CLASSES


@dataclass
class Splits:
    """Images as float32 in [0, 1], shape (N, 28, 28, 1); labels int64 in 0..9."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    digest: str   # identifies the source data, not the split
    source: str   # directory the files came from, or "synthetic"
    name: str     # "fashion_mnist" or "synthetic"
    # Per split ("training", "validation", "test"): the source's digest plus the split's indices.
    split_digests: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # the data.* values that made the splits

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*IMAGE_SHAPE, 1)

    @property
    def class_names(self) -> list[str]:
        return list(CLASS_NAMES)


# --------------------------------------------------------------------------- splitting


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator,
                       pool: Optional[np.ndarray] = None) -> np.ndarray:
    """Sorted indices of ``n`` items from ``pool`` (default: all), class proportions kept.

    Each class gets floor(n * share); the leftover slots go to the classes with
    the largest remainders, so counts differ from the exact share by < 1.
    """
    pool = np.arange(len(labels)) if pool is None else pool
    classes, counts = np.unique(labels[pool], return_counts=True)
    exact = n * counts / counts.sum()
    take = np.floor(exact).astype(int)
    leftover = n - take.sum()
    # Ties broken by a seeded shuffle so no class is always favoured.
    order = rng.permutation(len(classes))
    by_remainder = order[np.argsort(-(exact - take)[order], kind="stable")]
    take[by_remainder[:leftover]] += 1
    chosen = [rng.choice(pool[labels[pool] == c], size=k, replace=False)
              for c, k in zip(classes, take)]
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)


def split_indices(labels: np.ndarray, val_samples: int, train_samples: Optional[int], seed: int,
                  pool_name: str = "training images") -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices: stratified val hold-out, then an optional stratified train subset."""
    total = len(labels)
    if val_samples < 0 or val_samples >= total:
        raise DataError(f"data.val_samples={val_samples} must be between 0 and {total - 1}: "
                        f"there are {total} {pool_name} and some must remain for training.")
    if train_samples is not None:
        if train_samples < 1:
            raise DataError(f"data.train_samples={train_samples} must be null (all) or >= 1.")
        if val_samples + train_samples > total:
            raise DataError(
                f"data.val_samples={val_samples} + data.train_samples={train_samples} = "
                f"{val_samples + train_samples} exceeds the {total} {pool_name}. Lower one of them "
                f"(data.train_samples=null uses all {total - val_samples} that remain).")
    rng = np.random.default_rng(seed)
    val = stratified_indices(labels, val_samples, rng)
    rest = np.setdiff1d(np.arange(total), val, assume_unique=True)
    if train_samples is None:
        return rest, val
    return stratified_indices(labels, train_samples, rng, pool=rest), val


@contextlib.contextmanager
def _small_pages() -> Iterator[None]:
    """Allocate without NumPy's transparent-huge-page hint for the duration.

    NumPy madvises huge pages for large arrays; on kernels whose THP defrag setting is
    ``madvise`` the first touch of such memory waits for compaction. Measured on the 2-core
    VMs: filling a fresh 172 MB float32 array took 0.23-0.49 s with the hint, 0.08-0.09 s
    without, which was most of a warm full-data load.
    """
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # NumPy 1.x keeps it in numpy.core
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            yield
            return
    previous = _set_madvise_hugepage(False)
    try:
        yield
    finally:
        _set_madvise_hugepage(previous)


def _as_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]; float input is only reshaped."""
    if images.dtype == np.uint8:
        # One pass straight into float32 (same values as astype then /255).
        out = np.divide(images, np.float32(255), dtype=np.float32)
    else:
        out = images.astype(np.float32, copy=False)
    return out.reshape(*out.shape[:3], 1)


def split_digest(source_digest: str, split: str, indices: Optional[np.ndarray] = None) -> str:
    """Identifies one split's content: verified source data plus the rows taken (all rows when None)."""
    rows = b"" if indices is None else np.asarray(indices, dtype=np.int64).tobytes()
    return hashlib.sha256(f"{source_digest}:{split}:".encode() + rows).hexdigest()[:16]


def _splits(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, data_cfg: Any,
            pool_name: str, **meta: Any) -> Splits:
    train, val = split_indices(y, int(data_cfg.val_samples), data_cfg.train_samples,
                               int(data_cfg.split_seed), pool_name)
    meta["split_digests"] = {"training": split_digest(meta["digest"], "training", train),
                             "validation": split_digest(meta["digest"], "validation", val),
                             "test": split_digest(meta["digest"], "test")}
    # Index before scaling so a small train_samples only converts what it keeps.
    with _small_pages():
        return Splits(
            x_train=_as_float(x[train]), y_train=y[train].astype(np.int64),
            x_val=_as_float(x[val]), y_val=y[val].astype(np.int64),
            x_test=_as_float(x_test), y_test=y_test.astype(np.int64),
            **meta,
        )
