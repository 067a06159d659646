"""The verified arrays cached as one .npz per source folder (a fraction of a second to load)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

import fashion_lab.data.files as data_files  # data_files.EXPECTED read at call time: tests patch it
from fashion_lab.data.files import FILES, IMAGE_SHAPE, _CACHE_VERSION, _read_verified


# --------------------------------------------------------------------------- array cache


def cache_dir() -> Path:
    if os.environ.get("FASHION_LAB_CACHE"):
        return Path(os.environ["FASHION_LAB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "fashion-lab"


def _cache_key(directory: Path) -> str:
    # The source files' identity (path, size, mtime) plus what they were
    # verified against: a changed file or new digest constant is a new key.
    files = []
    for name in FILES.values():
        st = (directory / name).stat()
        files.append([str((directory / name).resolve()), st.st_size, st.st_mtime_ns])
    expected = [data_files.EXPECTED[k] for k in FILES]
    blob = json.dumps([_CACHE_VERSION, files, expected])
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _cache_path(directory: Path) -> Path:
    return cache_dir() / f"fashion_mnist-{_cache_key(directory)}.npz"


def _load_cached(path: Path) -> Optional[dict[str, np.ndarray]]:
    """The cached arrays, or None when absent or unreadable (the caller rebuilds)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in FILES}  # zip CRCs catch damaged content here
    except Exception:  # any unreadable cache is just a cache miss
        return None
    for key, spec in data_files.EXPECTED.items():
        want = (spec.count, *IMAGE_SHAPE) if key.endswith("images") else (spec.count,)
        if arrays[key].shape != want or arrays[key].dtype != np.uint8:
            return None
    return arrays


def _store_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically; a cache that cannot be written is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)  # uncompressed: loading is then a plain read
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        print(f"fashion-lab: could not write the data cache {path}: {exc}", file=sys.stderr)


def read_arrays(directory: Path, use_cache: bool = True) -> dict[str, np.ndarray]:
    """The four verified uint8 arrays from ``directory``, through the cache when allowed."""
    path = _cache_path(directory) if use_cache else None
    if path is not None and (arrays := _load_cached(path)) is not None:
        return arrays
    arrays = {key: _read_verified(directory / name, key) for key, name in FILES.items()}
    if path is not None:
        _store_cache(path, arrays)
    return arrays
