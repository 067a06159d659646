"""fashion_lab.data: locating, verifying, caching, splitting, synthetic data, downloading.

Fast tests run on tiny hand-made idx files (EXPECTED is monkeypatched to their
digests), so they need neither the Debian package nor the network. Tests on the
real 60000-image files are marked slow and skip when the package is absent.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from fashion_lab import data
from fashion_lab.config import DataConfig, DataName

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")  # data.DEBIAN_DIR is patched away below
CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "data"
needs_real = pytest.mark.skipif(
    not all((REAL_DIR / n).is_file() for n in data.FILES.values()),
    reason="needs `apt-get install dataset-fashion-mnist`")

N_TRAIN, N_TEST = 200, 50  # tiny fake data set: 20 / 5 images per class


def make_cfg(**overrides):
    return OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(CONF_DIR / "fashion_mnist.yaml"), overrides)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test sees the real Debian dir, the user's Keras cache, their array cache or a proxy."""
    monkeypatch.setattr(data.files, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("FASHION_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "*")  # urllib must reach 127.0.0.1 directly


# --------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_gz(path: Path, raw: bytes) -> None:
    path.write_bytes(gzip.compress(raw, compresslevel=1))


def fake_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        arrays[f"{split}_labels"] = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return arrays


def write_fake(directory: Path, arrays: dict[str, np.ndarray]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in data.FILES.items():
        write_gz(directory / name, idx_bytes(arrays[key]))
    return directory


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A complete tiny data set in tmp_path/fake, with EXPECTED patched to accept exactly it."""
    arrays = fake_arrays()
    expected = {key: data.FileSpec(hashlib.sha256(idx_bytes(a)).hexdigest(), len(a))
                for key, a in arrays.items()}
    monkeypatch.setattr(data.files, "EXPECTED", expected)
    return write_fake(tmp_path / "fake", arrays), arrays


class CountingServer:
    """A local static file server that counts the requests it gets."""

    def __init__(self, root: Path):
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(root: Path) -> CountingServer:
        servers.append(CountingServer(root))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


# --------------------------------------------------------------------------- idx parsing + verification


def test_parse_idx_reads_hand_made_files():
    images = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28) % 256
    labels = np.array([7, 0, 9])
    parsed = data.parse_idx(idx_bytes(images), "images", 3, "imgs")
    assert parsed.shape == (3, 28, 28) and parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, images)
    np.testing.assert_array_equal(data.parse_idx(idx_bytes(labels), "labels", 3, "lbls"), labels)


@pytest.mark.parametrize("raw, match", [
    (idx_bytes(np.zeros((3, 28, 28)), magic=2049), "bad magic number 2049"),
    (idx_bytes(np.zeros((4, 28, 28))), "wrong item count"),
    (idx_bytes(np.zeros((3, 28, 27))), "image size"),
    (idx_bytes(np.zeros((3, 28, 28)))[:-5], "bytes after decompression"),
    (b"\x00\x00", "too short"),
])
def test_parse_idx_rejects_malformed(raw, match):
    with pytest.raises(data.CorruptDataError, match=match):
        data.parse_idx(raw, "images", 3, "imgs.gz")


def test_load_fake_data(fake):
    directory, arrays = fake
    splits = data.load_data(make_cfg(dir=str(directory), val_samples=50))
    assert splits.source == str(directory) and splits.name == "fashion_mnist"
    assert splits.x_train.shape == (150, 28, 28, 1) and splits.x_val.shape == (50, 28, 28, 1)
    assert splits.x_test.shape == (N_TEST, 28, 28, 1)
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert splits.y_train.dtype == np.int64 and set(np.unique(splits.y_train)) == set(range(10))
    # Test set untouched (order and values), scaled by exactly 1/255.
    np.testing.assert_array_equal(splits.y_test, arrays["test_labels"])
    np.testing.assert_array_equal(splits.x_test[..., 0], arrays["test_images"].astype(np.float32) / 255)
    assert splits.num_classes == 10 and splits.input_shape == (28, 28, 1)
    assert splits.class_names[9] == "Ankle boot"
    assert 0 < len(splits.digest) <= 32 and int(splits.digest, 16) >= 0


def test_digest_mismatch_names_the_file(fake, monkeypatch):
    directory, _ = fake
    monkeypatch.setitem(data.files.EXPECTED, "train_labels", data.FileSpec("0" * 64, N_TRAIN))
    with pytest.raises(data.CorruptDataError, match="digest mismatch") as info:
        data.load_data(make_cfg(dir=str(directory), val_samples=50))
    assert str(directory / "train-labels-idx1-ubyte.gz") in str(info.value)


def test_bad_magic_names_the_file(fake):
    directory, arrays = fake
    bad = directory / "t10k-images-idx3-ubyte.gz"
    write_gz(bad, idx_bytes(arrays["test_images"], magic=1234))
    with pytest.raises(data.CorruptDataError, match="bad magic number 1234") as info:
        data.load_data(make_cfg(dir=str(directory), val_samples=50))
    assert str(bad) in str(info.value)


def test_truncated_gzip(fake):
    directory, _ = fake
    bad = directory / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(data.CorruptDataError, match="gzip") as info:
        data.load_data(make_cfg(dir=str(directory), val_samples=50))
    assert str(bad) in str(info.value)


# --------------------------------------------------------------------------- locating


def test_not_found_lists_every_place_in_order(tmp_path, monkeypatch, fake):
    partial, _ = fake  # complete, then made incomplete
    (partial / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("FASHION_MNIST_DIR", str(partial))
    cfg = make_cfg(dir=str(tmp_path / "nowhere"))
    with pytest.raises(data.DataNotFoundError) as info:
        data.locate(cfg)
    msg = str(info.value)
    places = [str(tmp_path / "nowhere"), str(partial), str(tmp_path / "debian"),
              str(tmp_path / "keras" / "datasets" / "fashion-mnist")]
    positions = [msg.index(p) for p in places]
    assert positions == sorted(positions)
    assert "missing t10k-labels-idx1-ubyte.gz" in msg and "does not exist" in msg
    for hint in ("apt-get install dataset-fashion-mnist", "data.dir=", "data.download=true"):
        assert hint in msg


def test_home_keras_cache_when_no_keras_home(tmp_path, monkeypatch, fake):
    monkeypatch.delenv("KERAS_HOME")
    with pytest.raises(data.DataNotFoundError, match=str(tmp_path / "home" / ".keras" / "datasets")):
        data.locate(make_cfg())


def test_search_order(tmp_path, monkeypatch, fake):
    first, arrays = fake
    second = write_fake(tmp_path / "second", arrays)
    debian = write_fake(tmp_path / "debian", arrays)
    keras_dir = write_fake(tmp_path / "keras" / "datasets" / "fashion-mnist", arrays)
    monkeypatch.setenv("FASHION_MNIST_DIR", str(second))
    assert data.locate(make_cfg(dir=str(first))) == first          # data.dir wins over the env var
    assert data.locate(make_cfg()) == second                       # env var over Debian
    monkeypatch.delenv("FASHION_MNIST_DIR")
    assert data.locate(make_cfg()) == debian                       # Debian over Keras cache
    shutil.rmtree(debian)
    assert data.locate(make_cfg()) == keras_dir
    (first / "train-images-idx3-ubyte.gz").unlink()                # incomplete dirs are skipped ...
    assert data.locate(make_cfg()) == keras_dir
    monkeypatch.setenv("FASHION_MNIST_DIR", str(first))
    assert data.locate(make_cfg()) == keras_dir
    with pytest.raises(data.DataNotFoundError, match="data.dir="):  # ... but an explicit data.dir is never replaced
        data.locate(make_cfg(dir=str(first)))


# --------------------------------------------------------------------------- array cache


def test_cache_is_used_and_rebuilt_when_unreadable(fake, tmp_path, monkeypatch):
    directory, _ = fake
    cfg = make_cfg(dir=str(directory), val_samples=50)
    first = data.load_data(cfg)
    cached = list((tmp_path / "cache").glob("fashion_mnist-*.npz"))
    assert len(cached) == 1
    # A warm load must not decompress anything.
    with monkeypatch.context() as patch:
        patch.setattr(data.files, "_decompress", lambda *a: pytest.fail("cache not used"))
        np.testing.assert_array_equal(data.load_data(cfg).x_train, first.x_train)
    cached[0].write_bytes(b"not a zip file")
    np.testing.assert_array_equal(data.load_data(cfg).x_train, first.x_train)
    assert data._load_cached(cached[0]) is not None  # rewritten


def test_cache_key_follows_file_changes(fake):
    directory, _ = fake
    before = data._cache_path(directory)
    f = directory / "train-images-idx3-ubyte.gz"
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert data._cache_path(directory) != before


def test_cache_off_writes_nothing(fake, tmp_path):
    directory, _ = fake
    data.load_data(make_cfg(dir=str(directory), val_samples=50, cache=False))
    assert not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- splitting


def balanced_labels(n_per_class: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(10), n_per_class))


def test_stratified_validation_split():
    labels = balanced_labels()
    train, val = data.split_indices(labels, 200, None, seed=3)
    assert np.bincount(labels[val], minlength=10).tolist() == [20] * 10
    assert not set(train) & set(val)
    assert sorted(np.concatenate([train, val])) == list(range(1000))
    again = data.split_indices(labels, 200, None, seed=3)
    np.testing.assert_array_equal(again[1], val)
    assert not np.array_equal(data.split_indices(labels, 200, None, seed=4)[1], val)


def test_train_samples_subset():
    labels = balanced_labels()
    train, val = data.split_indices(labels, 100, 50, seed=0)
    assert len(train) == 50 and np.bincount(labels[train], minlength=10).tolist() == [5] * 10
    assert not set(train) & set(val)


def test_uneven_classes_keep_proportions():
    labels = np.repeat(np.arange(10), np.arange(10, 110, 10))  # 10, 20, ..., 100 per class
    _, val = data.split_indices(labels, 137, None, seed=0)
    counts = np.bincount(labels[val], minlength=10)
    share = 137 * np.bincount(labels) / len(labels)
    assert counts.sum() == 137 and np.all(np.abs(counts - share) < 1)


@pytest.mark.parametrize("val, train, match", [
    (900, 200, r"data.val_samples=900 \+ data.train_samples=200 = 1100 exceeds the 1000"),
    (1000, None, "data.val_samples=1000"),
    (-1, None, "data.val_samples=-1"),
    (10, 0, "data.train_samples=0"),
])
def test_split_sizes_checked(val, train, match):
    with pytest.raises(data.DataError, match=match):
        data.split_indices(balanced_labels(), val, train, seed=0)


def test_too_many_samples_from_config(fake):
    directory, _ = fake
    with pytest.raises(data.DataError, match="data.train_samples=190"):
        data.load_data(make_cfg(dir=str(directory), val_samples=50, train_samples=190))


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("name", [DataName.synthetic, "synthetic"])
def test_synthetic_shapes_and_range(name):
    splits = data.load_data(make_cfg(name=name, val_samples=200))
    assert splits.name == "synthetic" and splits.source == "synthetic"
    assert splits.x_train.shape == (800, 28, 28, 1) and splits.x_val.shape == (200, 28, 28, 1)
    assert splits.x_test.shape == (300, 28, 28, 1)
    for x in (splits.x_train, splits.x_val, splits.x_test):
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0
    assert np.bincount(splits.y_val).tolist() == [20] * 10


def test_synthetic_is_seeded():
    a = data.load_data(make_cfg(name="synthetic", val_samples=200))
    b = data.load_data(make_cfg(name="synthetic", val_samples=200))
    c = data.load_data(make_cfg(name="synthetic", val_samples=200, split_seed=1))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.digest == b.digest != c.digest
    assert not np.array_equal(a.x_train, c.x_train)


def test_synthetic_has_learnable_signal():
    splits = data.load_data(make_cfg(name="synthetic", val_samples=200))
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    centroids = np.stack([flat(splits.x_train)[splits.y_train == k].mean(0) for k in range(10)])
    dists = ((flat(splits.x_test)[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = (dists.argmin(1) == splits.y_test).mean()
    assert accuracy > 0.9
    # Not trivially separable: a single random pixel is near chance.
    pixel = flat(splits.x_test)[:, 300]
    assert abs(np.corrcoef(pixel, splits.y_test)[0, 1]) < 0.5


def test_synthetic_generation_is_fast():
    start = time.perf_counter()
    data.make_synthetic(1300, seed=0)
    assert time.perf_counter() - start < 1.0  # typically ~0.04 s; loose bound for busy CI


def test_unknown_name():
    cfg = OmegaConf.create({"name": "mnist"})
    with pytest.raises(data.DataError, match="data.name='mnist'"):
        data.load_data(cfg)


# --------------------------------------------------------------------------- downloading


def test_download_fake_files(fake, tmp_path, serve):
    directory, _ = fake
    server = serve(directory)
    splits = data.load_data(make_cfg(url=server.url, download=True, val_samples=50))
    keras_dir = tmp_path / "keras" / "datasets" / "fashion-mnist"
    assert splits.source == str(keras_dir)
    assert sorted(p.name for p in keras_dir.iterdir()) == sorted(data.FILES.values())
    assert len(server.requests) == 4
    data.load_data(make_cfg(url=server.url, download=True, val_samples=50))
    assert len(server.requests) == 4  # found in the Keras cache now: no new requests


def test_no_download_without_flag(fake, tmp_path, serve):
    directory, _ = fake
    server = serve(directory)
    with pytest.raises(data.DataNotFoundError):
        data.load_data(make_cfg(url=server.url, val_samples=50))
    assert server.requests == []


def test_corrupt_download_is_not_kept(fake, tmp_path, serve, monkeypatch):
    directory, _ = fake
    monkeypatch.setitem(data.files.EXPECTED, "test_labels", data.FileSpec("0" * 64, N_TEST))
    server = serve(directory)
    with pytest.raises(data.CorruptDataError, match="t10k-labels-idx1-ubyte.gz.*digest mismatch"):
        data.locate(make_cfg(url=server.url, download=True))
    keras_dir = tmp_path / "keras" / "datasets" / "fashion-mnist"
    assert "t10k-labels-idx1-ubyte.gz" not in {p.name for p in keras_dir.iterdir()}
    assert not list(keras_dir.glob("*.part"))


def test_download_server_down(tmp_path):
    with pytest.raises(data.DataError, match="Downloading http://127.0.0.1:9/"):
        data.locate(make_cfg(url="http://127.0.0.1:9/", download=True))


# --------------------------------------------------------------------------- config files


@pytest.mark.parametrize("file, expected", [
    ("fashion_mnist.yaml", {"name": DataName.fashion_mnist, "val_samples": 5000, "train_samples": None}),
    ("small.yaml", {"name": DataName.fashion_mnist, "val_samples": 2000, "train_samples": 10000}),
    ("synthetic.yaml", {"name": DataName.synthetic, "val_samples": 200, "synthetic_train": 1000,
                        "synthetic_test": 300}),
])
def test_conf_files_merge_onto_schema(file, expected):
    cfg = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(CONF_DIR / file))
    for key, value in expected.items():
        assert cfg[key] == value


# --------------------------------------------------------------------------- real data


@pytest.mark.slow
@needs_real
def test_real_data_full():
    splits = data.load_data(make_cfg(dir=str(REAL_DIR)))
    assert splits.x_train.shape == (55000, 28, 28, 1) and splits.y_train.shape == (55000,)
    assert splits.x_val.shape == (5000, 28, 28, 1) and splits.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(splits.y_val).tolist() == [500] * 10
    assert np.bincount(splits.y_test).tolist() == [1000] * 10
    assert splits.x_train.dtype == np.float32 and splits.x_train.max() == 1.0
    assert splits.digest == "d1fd84a877f3b78f"
    # Warm: served from the array cache.
    start = time.perf_counter()
    again = data.load_data(make_cfg(dir=str(REAL_DIR)))
    assert time.perf_counter() - start < 5.0
    np.testing.assert_array_equal(again.y_val, splits.y_val)


@pytest.mark.slow
@needs_real
def test_real_data_small_config():
    cfg = OmegaConf.merge(make_cfg(dir=str(REAL_DIR)), OmegaConf.load(CONF_DIR / "small.yaml"))
    splits = data.load_data(cfg)
    assert len(splits.x_train) == 10000 and len(splits.x_val) == 2000 and len(splits.x_test) == 10000
    assert np.bincount(splits.y_train).tolist() == [1000] * 10


@needs_real  # under a second: verifies the real files once
def test_download_real_files(tmp_path, serve):
    served = tmp_path / "served"
    shutil.copytree(REAL_DIR, served)
    server = serve(served)
    cfg = make_cfg(url=server.url, download=True, cache=False)
    splits = data.load_data(cfg)
    keras_dir = tmp_path / "keras" / "datasets" / "fashion-mnist"
    assert splits.source == str(keras_dir) and len(splits.x_test) == 10000
    for name in data.FILES.values():
        assert (keras_dir / name).read_bytes() == (REAL_DIR / name).read_bytes()
    assert len(server.requests) == 4


@needs_real  # under a second: verifies the real files once
def test_no_download_of_real_files_without_flag(tmp_path, serve):
    server = serve(REAL_DIR)
    with pytest.raises(data.DataNotFoundError):
        data.load_data(make_cfg(url=server.url))
    assert server.requests == []
