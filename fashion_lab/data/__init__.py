"""Fashion-MNIST (or a synthetic stand-in) as verified, split numpy arrays.

``load_data(cfg.data)`` is the one entry point. It finds the four standard
``.gz`` files (see ``locate`` for the search order), checks every file against
the known digest of its *decompressed* content, parses the idx format, and
returns a seeded, stratified train/validation split plus the untouched test set.

numpy and the standard library only: importing this module never pulls in
TensorFlow, so config checks and tests stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fashion_lab.config import DataName

# The face: every name the package offered before it was split (tests and notebooks use them).
from fashion_lab.data import files as data_files
from fashion_lab.data.cache import _cache_path, _load_cached, cache_dir, read_arrays  # noqa: F401
from fashion_lab.data.files import (CLASS_NAMES, DEBIAN_DIR, EXPECTED, FILES, IMAGE_SHAPE, NUM_CLASSES,  # noqa: F401
                                    CorruptDataError, DataError, DataNotFoundError, FileSpec, _source_digest,
                                    check_dir, describe_data_dir, download, keras_cache_dir, locate,
                                    missing_data_files, parse_idx)
from fashion_lab.data.splits import Splits, _splits, split_digest, split_indices, stratified_indices  # noqa: F401
from fashion_lab.data.synthetic import _load_synthetic, make_synthetic  # noqa: F401


def _data_name(value: Any) -> DataName:
    try:
        return DataName(getattr(value, "value", value))
    except ValueError as exc:
        allowed = ", ".join(d.value for d in DataName)
        raise DataError(f"data.name={value!r} is not a known data set; use one of: {allowed}.") from exc


def load_data(data_cfg: Any) -> Splits:
    """Verified, split data for ``cfg.data``: the one entry point training uses."""
    if _data_name(data_cfg.name) is DataName.synthetic:
        return _load_synthetic(data_cfg)
    directory = locate(data_cfg)
    arrays = read_arrays(directory, use_cache=bool(data_cfg.cache))
    return _splits(arrays["train_images"], arrays["train_labels"],
                   arrays["test_images"], arrays["test_labels"], data_cfg, "training images",
                   digest=_source_digest(), source=str(directory), name=DataName.fashion_mnist.value,
                   settings={"data.split_seed": int(data_cfg.split_seed), "data.val_samples": int(data_cfg.val_samples),
                             "data.train_samples": data_cfg.train_samples})


def describe_splits(splits: Splits) -> list[dict[str, Any]]:
    """Each split in plain words and numbers (the record logs them as MLflow datasets): its context,
    digest, rows, shapes and dtypes, the files it was read from and where those came from."""
    synthetic = splits.source == "synthetic"
    directory = None if synthetic else Path(splits.source)
    if synthetic:
        origin = "synthetic: generated in memory by fashion_lab.data.make_synthetic (no files)"
    elif directory.resolve() == data_files.DEBIAN_DIR.resolve():
        origin = f"Debian package dataset-fashion-mnist ({data_files.DEBIAN_DIR})"
    else:
        origin = f"Fashion-MNIST idx files in {directory}"
    described = []
    for context, x, y, files in (("training", splits.x_train, splits.y_train, ("train_images", "train_labels")),
                                 ("validation", splits.x_val, splits.y_val, ("train_images", "train_labels")),
                                 ("test", splits.x_test, splits.y_test, ("test_images", "test_labels"))):
        described.append({
            "name": splits.name, "context": context, "digest": splits.split_digests[context],
            "source_digest": splits.digest, "origin": origin, "directory": None if synthetic else str(directory),
            "files": [] if synthetic else [FILES[k] for k in files], "settings": dict(splits.settings),
            "num_rows": int(len(y)), "features_shape": [int(n) for n in x.shape], "features_dtype": str(x.dtype),
            "targets_shape": [int(n) for n in y.shape], "targets_dtype": str(y.dtype)})
    return described


__all__ = [
    "CLASS_NAMES", "FILES", "EXPECTED", "DEBIAN_DIR", "DataError", "DataNotFoundError",
    "CorruptDataError", "Splits", "describe_splits", "split_digest", "locate", "load_data", "make_synthetic", "download",
    "keras_cache_dir", "cache_dir", "parse_idx", "read_arrays", "split_indices",
    "stratified_indices",
]
