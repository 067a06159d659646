"""The Fashion-MNIST files: their names and digests, where they are found, downloading, parsing and verifying."""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np


CLASS_NAMES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
NUM_CLASSES = len(CLASS_NAMES)
IMAGE_SHAPE = (28, 28)



class FileSpec(NamedTuple):
    """What a verified file must contain: sha256 of the decompressed bytes and the item count."""
    sha256: str
    count: int


# sha256 of the decompressed idx files, computed from the Debian package
# dataset-fashion-mnist and cross-checked against the upstream MD5s
# (f4a8712d..., 9018921c..., 8181f547..., 15d48437...).
EXPECTED = {
    "train_images": FileSpec("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 60000),
    "train_labels": FileSpec("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60000),
    "test_images": FileSpec("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 10000),
    "test_labels": FileSpec("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10000),
}

# Module constant (not inlined) so tests can point it elsewhere.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "apt-get install dataset-fashion-mnist"

_IMAGE_MAGIC = 2051  # idx3: unsigned byte, 3 dimensions
_LABEL_MAGIC = 2049  # idx1: unsigned byte, 1 dimension
_CACHE_VERSION = 1   # bump when the cache layout changes


class DataError(Exception):
    """The data could not be provided; the message says why and what to do."""


class DataNotFoundError(DataError):
    """No directory holds all four files (and downloading was not asked for)."""


class CorruptDataError(DataError):
    """A file exists but is not the expected Fashion-MNIST content."""


# The four Fashion-MNIST files: data.dir is checked here, before TensorFlow or any run.
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def missing_data_files(directory: Path) -> list[str]:
    return [name for name in FILES.values() if not (directory / name).is_file()]


def describe_data_dir(directory: Path) -> str:
    if not directory.is_dir():
        return "does not exist"
    missing = missing_data_files(directory)
    return "missing " + ", ".join(missing) if missing else "complete"


def check_dir(directory: Any) -> Optional[str]:
    """None when ``directory`` holds the four files; else what is wrong with it (for data.dir)."""
    path = Path(str(directory)).expanduser()
    state = describe_data_dir(path)
    return None if state == "complete" else f"{path} {state}"


# --------------------------------------------------------------------------- locating


def keras_cache_dir() -> Path:
    """Where ``keras.datasets.fashion_mnist`` keeps the same files; also our download target."""
    home = os.environ.get("KERAS_HOME") or str(Path.home() / ".keras")
    return Path(home).expanduser() / "datasets" / "fashion-mnist"


def _candidates(data_cfg: Any) -> list[tuple[str, Path]]:
    """(label, directory) in search order; read env vars now, not at import."""
    places = []
    if data_cfg.dir:
        places.append(("data.dir", Path(str(data_cfg.dir)).expanduser()))
    env_dir = os.environ.get("FASHION_MNIST_DIR")
    if env_dir:
        places.append(("$FASHION_MNIST_DIR", Path(env_dir).expanduser()))
    places.append(("Debian package", DEBIAN_DIR))
    places.append(("Keras cache", keras_cache_dir()))
    return places


def locate(data_cfg: Any) -> Path:
    """Return the first directory holding all four files.

    An explicit data.dir is used or refused, never silently replaced by another copy. Without
    it the search order is $FASHION_MNIST_DIR, the Debian package directory, the Keras cache;
    then, only if data.download is true, a download into the Keras cache. A directory missing
    any file is skipped.
    """
    places = _candidates(data_cfg)
    refused = ""
    if data_cfg.dir:
        problem = check_dir(data_cfg.dir)
        if problem is None:
            return places[0][1]
        refused = (f"data.dir={str(data_cfg.dir)!r} is not allowed: {problem}; an explicit data.dir is used "
                   f"as given, never replaced by another place (leave it null to search the others). ")
    else:
        for _, directory in places:
            if directory.is_dir() and not missing_data_files(directory):
                return directory
        if data_cfg.download:
            target = keras_cache_dir()
            download(str(data_cfg.url), target)
            return target
    looked = "; ".join(f"{i}. {label} {d} ({describe_data_dir(d)})" for i, (label, d) in enumerate(places, 1))
    raise DataNotFoundError(
        f"{refused}Fashion-MNIST not found. Looked in, in order: {looked}. "
        f"Each place must hold all of {', '.join(FILES.values())}. "
        f"Install them with `{INSTALL_HINT}` (puts them in {DEBIAN_DIR}), "
        f"or point to a directory holding them with data.dir=/path/to/dir (or $FASHION_MNIST_DIR), "
        f"or allow a download into {keras_cache_dir()} with data.download=true (from data.url={data_cfg.url})."
    )


# --------------------------------------------------------------------------- downloading


def download(url: str, target: Path) -> None:
    """Fetch the files missing from ``target``; each is verified before it is renamed into place."""
    target.mkdir(parents=True, exist_ok=True)
    base = url if url.endswith("/") else url + "/"
    for key, name in FILES.items():
        if (target / name).is_file():
            continue
        _download_one(base + name, target / name, key)


def _download_one(url: str, dest: Path, key: str) -> None:
    # A temp file in the same directory makes the final rename atomic: an
    # interrupted download never leaves a half file under the real name.
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out)
        _read_verified(tmp, key, shown_name=f"{url} (downloaded)")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch(url: str, out) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                _progress(url, done, total)
        print(file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(
            f"Downloading {url} failed: {exc}. Check data.url and the network, or avoid the download: "
            f"`{INSTALL_HINT}`, or data.dir=/path/to/dir holding {', '.join(FILES.values())}."
        ) from exc


def _progress(url: str, done: int, total: int) -> None:
    size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    print(f"\rdownloading {url}: {size}", end="", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- parsing + verifying


def parse_idx(raw: bytes, kind: str, count: int, shown_name: str) -> np.ndarray:
    """Parse decompressed idx bytes: kind "images" -> (count, 28, 28) uint8, "labels" -> (count,) uint8."""
    images = kind == "images"
    magic, header = (_IMAGE_MAGIC, 16) if images else (_LABEL_MAGIC, 8)
    if len(raw) < header:
        raise CorruptDataError(f"{shown_name}: only {len(raw)} bytes, too short for an idx header.")
    dims = np.frombuffer(raw, dtype=">u4", count=header // 4)
    if dims[0] != magic:
        raise CorruptDataError(
            f"{shown_name}: bad magic number {int(dims[0])}, expected {magic} ({kind} idx file).")
    shape = (count, *IMAGE_SHAPE) if images else (count,)
    if tuple(int(d) for d in dims[1:]) != shape:
        raise CorruptDataError(
            f"{shown_name}: header says shape {tuple(int(d) for d in dims[1:])}, expected {shape} "
            f"(wrong item count or image size).")
    expected_len = header + int(np.prod(shape))
    if len(raw) != expected_len:
        raise CorruptDataError(
            f"{shown_name}: {len(raw)} bytes after decompression, expected {expected_len} "
            f"for {count} {kind}.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _decompress(path: Path, shown_name: str) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise CorruptDataError(f"{shown_name}: not a complete gzip file ({exc}); the file is truncated "
                               f"or damaged. Delete it and install or download it again.") from exc


def _read_verified(path: Path, key: str, shown_name: Optional[str] = None) -> np.ndarray:
    """Decompress, parse and check one file against EXPECTED[key]."""
    shown_name = shown_name or str(path)
    spec = EXPECTED[key]
    raw = _decompress(path, shown_name)
    # Header first: "bad magic" says more than a digest mismatch.
    array = parse_idx(raw, key.split("_")[1], spec.count, shown_name)
    actual = hashlib.sha256(raw).hexdigest()
    if actual != spec.sha256:
        raise CorruptDataError(
            f"{shown_name}: digest mismatch, sha256 of the decompressed content is {actual[:16]}..., "
            f"expected {spec.sha256[:16]}.... It is not the published Fashion-MNIST file; "
            f"delete it and install (`{INSTALL_HINT}`) or download it again.")
    return array


def _source_digest() -> str:
    """Short id of the verified source content (same for every place that passes verification)."""
    joined = "".join(EXPECTED[k].sha256 for k in FILES)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]
