"""Benchmark workers: each runs in its own process (fresh TensorFlow) and prints one JSON line.

    python benchmarks/workers.py NAME '{"json": "args"}'

run.py starts these; the last stdout line starting with RESULT is the answer.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tune_rss


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from fashion_lab.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _TimedClient:
    """Proxy around an MlflowClient that adds up the seconds spent in its calls."""

    def __init__(self, client, clock):
        self._client, self._clock = client, clock

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self._clock["client"] += time.perf_counter() - start
        return timed


def _instrument(clock):
    """Time every MLflow client call, the per-epoch callback and the artifact files (plots included)."""
    from fashion_lab.record import tracking
    from fashion_lab.run import train

    def wrap(owner, name, key):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock[key] += time.perf_counter() - start
        setattr(owner, name, timed)

    make_client = tracking.client_for
    tracking.client_for = lambda cfg: _TimedClient(make_client(cfg), clock)
    wrap(tracking, "client_for", "setup")
    wrap(train.EpochLogger, "on_epoch_end", "epoch_logging")
    wrap(train, "_write_artifacts", "artifact_files")


def fashion_lab_train(args):
    """train(cfg) on a real-data subset (or synthetic); epoch times and the record's own cost."""
    from fashion_lab.run.train import train

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"tracking.uri=sqlite:///{tmp}/m.db", "trainer.verbose=0"] + list(args["overrides"])
        cfg = _compose(overrides)
        store_seconds = 0.0
        if cfg.tracking.enabled:  # a new sqlite store runs its schema migrations once: not a per-run cost
            from fashion_lab.record import tracking

            start = time.perf_counter()
            tracking.ensure_experiment(tracking.client_for(cfg.tracking), cfg.tracking)
            store_seconds = time.perf_counter() - start
        clock = {"client": 0.0, "setup": 0.0, "epoch_logging": 0.0, "artifact_files": 0.0}
        _instrument(clock)
        start = time.perf_counter()
        result = train(cfg, overrides=overrides)
        wall = time.perf_counter() - start
    epochs = len(result.history)
    # Epoch logging runs inside client time too: per-run cost is everything else the record did.
    per_run = clock["setup"] + clock["client"] + clock["artifact_files"] - clock["epoch_logging"]
    return {"epoch_seconds": list(map(float, result.history["epoch_seconds"])),
            "train_images": int(cfg.data.train_samples or 55000) if cfg.data.name != "synthetic" else 0,
            "wall": wall, "train_seconds": result.metrics["train_seconds"],
            "record_per_epoch": clock["epoch_logging"] / max(epochs, 1),
            "record_per_run": per_run if cfg.tracking.enabled else 0.0,
            "artifact_files": clock["artifact_files"], "store_seconds": store_seconds, "clock": clock}


def train_ab(args):
    """Training overhead in ONE process: plain Keras, train() tracked, train() untracked, rotated per repeat.

    One TensorFlow start for all variants leaves more of a noisy machine's time for repeats; every
    variant builds a fresh model after clear_session, on the same arrays (loaded once).
    """
    import keras

    sys.path.insert(0, str(REPO / "benchmarks"))
    import tutorial_keras
    from fashion_lab.data import load_data
    from fashion_lab.run.train import train

    with tempfile.TemporaryDirectory() as tmp:
        base = [f"tracking.uri=sqlite:///{tmp}/m.db", "trainer.verbose=0"] + list(args["overrides"])
        tracked_cfg, untracked_cfg = _compose(base), _compose(base + ["tracking.enabled=false"])
        splits = load_data(tracked_cfg.data)
        from fashion_lab.record import tracking

        start = time.perf_counter()
        tracking.ensure_experiment(tracking.client_for(tracked_cfg.tracking), tracked_cfg.tracking)
        store_seconds = time.perf_counter() - start
        clock = {"client": 0.0, "setup": 0.0, "epoch_logging": 0.0, "artifact_files": 0.0}
        _instrument(clock)
        batch, epochs = int(tracked_cfg.trainer.batch_size), int(tracked_cfg.trainer.epochs)

        def plain():
            keras.utils.set_random_seed(int(tracked_cfg.trainer.seed))
            model = tutorial_keras.build_model()
            model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            timer = tutorial_keras.EpochTimer()
            if tracked_cfg.data.tf_autotune:  # Keras' arrays as they come, like fashion-lab with the autotuner
                data = dict(x=splits.x_train, y=splits.y_train, validation_data=(splits.x_val, splits.y_val),
                            batch_size=batch)
            else:  # the pipeline fashion-lab trains on by default, so the ratio is fashion-lab's own overhead
                without = tutorial_keras.keras_dataset_without_autotune
                data = dict(x=without(splits.x_train, splits.y_train, batch, True),
                            validation_data=without(splits.x_val, splits.y_val, batch, False), shuffle=False)
            model.fit(**data, epochs=epochs, callbacks=[timer.callback], verbose=0)
            return {"epoch_seconds": timer.seconds}

        def fashion_lab(cfg):
            for key in clock:
                clock[key] = 0.0
            start = time.perf_counter()
            result = train(cfg, splits=splits)
            wall = time.perf_counter() - start
            n = len(result.history)
            per_run = clock["setup"] + clock["client"] + clock["artifact_files"] - clock["epoch_logging"]
            return {"epoch_seconds": list(map(float, result.history["epoch_seconds"])), "wall": wall,
                    "record_per_epoch": clock["epoch_logging"] / max(n, 1),
                    "record_per_run": per_run if cfg.tracking.enabled else 0.0,
                    "artifact_files": clock["artifact_files"], "store_seconds": store_seconds}

        variants = [("plain", plain), ("tracked", lambda: fashion_lab(tracked_cfg)),
                    ("untracked", lambda: fashion_lab(untracked_cfg))]
        out = {name: [] for name, _ in variants}
        for i in range(int(args["repeats"])):  # rotate so each variant runs first in turn
            for name, fn in variants[i % 3:] + variants[:i % 3]:
                keras.backend.clear_session()
                out[name].append(fn())
    out["train_images"] = int(len(splits.x_train))
    return out


def plain_keras(args):
    """The reference script, in this process."""
    import contextlib
    import io

    sys.path.insert(0, str(REPO / "benchmarks"))
    import tutorial_keras

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tutorial_keras.main(list(args["argv"]) + ["--json"])
    return json.loads(out.getvalue().strip().splitlines()[-1])


def data_load(args):
    """Full Fashion-MNIST: parse + verify the .gz files (cache off) vs the verified array cache (warm)."""
    from omegaconf import OmegaConf

    from fashion_lab.config import DataConfig, DataName
    from fashion_lab.data import load_data

    os.environ["FASHION_LAB_CACHE"] = tempfile.mkdtemp(prefix="fl-bench-cache-")
    cold, warm = [], []
    load_data(OmegaConf.structured(DataConfig(name=DataName.fashion_mnist, cache=True)))  # fill the cache once
    for _ in range(int(args["repeats"])):
        for cache, sink in ((False, cold), (True, warm)):
            start = time.perf_counter()
            load_data(OmegaConf.structured(DataConfig(name=DataName.fashion_mnist, cache=cache)))
            sink.append(time.perf_counter() - start)
    return {"cold": cold, "warm": warm}


def memory(args):
    """RSS after each of N small train() calls in one process, tracking into a temp sqlite store."""
    import keras

    from fashion_lab.run.train import train

    rss = []
    with tempfile.TemporaryDirectory() as tmp:
        for trial in range(int(args["trials"])):
            overrides = [f"tracking.uri=sqlite:///{tmp}/m.db", "trainer.verbose=0", f"trainer.seed={trial}",
                         *args["overrides"]]
            train(_compose(overrides), overrides=overrides)
            if args.get("clear_session"):
                keras.backend.clear_session()
            rss.append(rss_mb())
    return {"rss_mb": rss}


def tune_memory(args):
    """The search process's RSS after each trial of one `fashion-lab tune` run (see tune_rss.py)."""
    from tune_rss import search_rss

    return search_rss(int(args["trials"]), list(args.get("overrides", [])))


def precision_ab(args):
    """float32 vs mixed_bfloat16 through train(cfg) (untracked) in ONE process, A/B alternated per repeat
    and batch size; the seed is the repeat number, so the same runs give accuracy over seeds."""
    import keras

    from fashion_lab.data import load_data
    from fashion_lab.run.train import train

    base = ["tracking.enabled=false", "trainer.verbose=0"] + list(args["overrides"])
    splits = load_data(_compose(base).data)  # the same arrays for every run
    out = []
    for repeat in range(int(args["repeats"])):
        for batch in args["batch_sizes"]:
            order = list(args["precisions"])
            if repeat % 2:
                order.reverse()
            for precision in order:
                keras.backend.clear_session()
                cfg = _compose(base + [f"trainer.precision={precision}", f"trainer.batch_size={batch}",
                                       f"trainer.seed={repeat}"])
                result = train(cfg, splits=splits)
                out.append({"precision": precision, "batch": batch, "seed": repeat,
                            "epoch_seconds": list(map(float, result.history["epoch_seconds"])),
                            "best_val_accuracy": float(result.metrics["best_val_accuracy"]),
                            "test_accuracy": float(result.metrics["test_accuracy"])})
    return {"runs": out}


def overrides_ab(args):
    """train(cfg) (untracked) with override set A vs B in ONE process, alternated per repeat, on the same
    arrays; the seed is the repeat number, so A and B of one repeat are the same run but for the setting."""
    import keras

    from fashion_lab.data import load_data
    from fashion_lab.run.train import train

    base = ["tracking.enabled=false", "trainer.verbose=0"] + list(args["overrides"])
    splits = load_data(_compose(base).data)
    out = {"a": [], "b": []}
    for repeat in range(int(args["repeats"])):
        for side in ("a", "b") if repeat % 2 == 0 else ("b", "a"):
            keras.backend.clear_session()
            result = train(_compose(base + list(args[side]) + [f"trainer.seed={repeat}"]), splits=splits)
            out[side].append({"epoch_seconds": list(map(float, result.history["epoch_seconds"])),
                              "val_accuracy": list(map(float, result.history["val_accuracy"])),
                              "loss": list(map(float, result.history["loss"])),
                              "test_accuracy": float(result.metrics["test_accuracy"])})
    return out


def _timed_trial(job: dict, t_call: float) -> dict:
    """One search trial (job._train: train, record, return) timed from the caller's call:
    to TensorFlow imported, to the first training step, to the end."""
    t_enter = time.time()
    import keras

    import fashion_lab.run.train as train_module  # what a fresh process pays before it can train

    t_ready = time.time()
    from fashion_lab.sweeps.job import _train

    first_step = []

    class FirstStep(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not first_step:
                first_step.append(time.time())

    original = train_module._callbacks
    train_module._callbacks = lambda cfg, logger: original(cfg, logger) + [FirstStep()]
    try:
        out = _train(**job)
    finally:
        train_module._callbacks = original
    return {"spawn": t_enter - t_call, "startup": t_ready - t_call, "first_step": first_step[0] - t_call,
            "wall": time.time() - t_call, "train_seconds": out["metrics"]["train_seconds"], "pid": os.getpid(),
            "rss_mb": rss_mb()}


def trial_start(args):
    """A trial in a fresh process vs in a warm worker vs in this process, A/B alternated per repeat."""
    import workers as me  # by module name, so the trial processes can import the function

    from fashion_lab.record import tracking
    from fashion_lab.runtime.fresh_process import call_in_fresh_process
    from fashion_lab.runtime.warm_worker import call_in_warm_worker, stop_all

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [f"tracking.uri=sqlite:///{tmp}/m.db", "trainer.verbose=0"] + list(args["overrides"])
        cfg = _compose(overrides)
        tracking.ensure_experiment(tracking.client_for(cfg.tracking), cfg.tracking)  # not a per-trial cost
        job = dict(cfg=cfg, overrides=list(args["overrides"]), name=None, parent=None, tags={})
        n = int(args["repeats"]) + 1
        warm = lambda: call_in_warm_worker(me._timed_trial, job, time.time(), trials_per_worker=n)
        fresh = lambda: call_in_fresh_process(me._timed_trial, job, time.time())
        in_process = lambda: me._timed_trial(job, time.time())
        first_warm = warm()  # the worker's own start: paid once per trials_per_worker trials
        in_process()  # this process's own first trial (imports, first-time set-up): not measured
        out = {"first_warm": first_warm, "fresh": [], "warm": [], "in_process": []}
        variants = [("fresh", fresh), ("warm", warm), ("in_process", in_process)]
        for i in range(int(args["repeats"])):
            for name, fn in variants[i % 3:] + variants[:i % 3]:
                out[name].append(fn())
        stop_all()
    return out


def matmul(args):
    """float32 matmul FLOP/s through TensorFlow (n x n, best of a few timed loops)."""
    import tensorflow as tf

    n, loops = int(args.get("n", 2048)), int(args.get("loops", 10))
    a = tf.random.normal((n, n), dtype=tf.float32)
    b = tf.random.normal((n, n), dtype=tf.float32)
    tf.matmul(a, b).numpy()  # warm-up
    rates = []
    for _ in range(int(args.get("repeats", 3))):
        start = time.perf_counter()
        for _ in range(loops):
            c = tf.matmul(a, b)
        c.numpy()
        rates.append(2 * n ** 3 * loops / (time.perf_counter() - start))
    return {"flops": rates}


WORKERS = {f.__name__: f for f in (fashion_lab_train, train_ab, overrides_ab, plain_keras, data_load, memory,
                                    tune_memory, matmul, precision_ab, trial_start)}

if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = WORKERS[sys.argv[1]](json.loads(sys.argv[2]) if len(sys.argv) > 2 else {})
    print("RESULT " + json.dumps(result))
