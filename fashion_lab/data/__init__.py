"""Fashion-MNIST (or a synthetic stand-in) as verified, split numpy arrays.

``load_data(cfg.data)`` is the one entry point. It finds the four standard
``.gz`` files (see ``locate`` for the search order), checks every file against
the known digest of its *decompressed* content, parses the idx format, and
returns a seeded, stratified train/validation split plus the untouched test set.

numpy and the standard library only: importing this module never pulls in
TensorFlow, so config checks and tests stay fast.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional

import numpy as np

from fashion_lab.config import DataName
from fashion_lab.data.files import FILES, check_dir, describe_data_dir, missing_data_files

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
    expected = [EXPECTED[k] for k in FILES]
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
    for key, spec in EXPECTED.items():
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


# --------------------------------------------------------------------------- entry point


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
    elif directory.resolve() == DEBIAN_DIR.resolve():
        origin = f"Debian package dataset-fashion-mnist ({DEBIAN_DIR})"
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
