"""A few timed training steps of a sweep's own network on synthetic arrays: what ``sweep.plan=true``
calibrates its expected time on when the store holds no finished run of the same shape.

Called in a fresh process (runtime.fresh_process), so the plan's own process never loads TensorFlow and
the timing starts from the same cold import a sweep pays.
"""

from __future__ import annotations

import time

START = time.perf_counter()


def _timed_cell(overrides: list[str], steps: int) -> dict:
    """One cell: build, compile, one untimed step (tracing), then ``steps`` timed training batches and
    one timed evaluation pass (seconds per image for each)."""
    import numpy as np

    from fashion_lab.config import compose
    from fashion_lab.model import tf_settings
    from fashion_lab.model.network import build_model
    from fashion_lab.model.optimizers import build_optimizer

    cfg = compose(overrides)
    tf_settings.configure(cfg.trainer)
    batch = int(cfg.trainer.batch_size)
    rng = np.random.default_rng(0)
    x = rng.random((batch * steps, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch * steps)
    started = time.perf_counter()
    model = build_model(cfg.model, (28, 28, 1), 10, precision=cfg.trainer.precision)
    model.compile(optimizer=build_optimizer(cfg.optimizer), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], jit_compile=cfg.trainer.jit_compile)
    model.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)
    model.evaluate(x[:batch], y[:batch], batch_size=batch, verbose=0)
    setup = time.perf_counter() - started
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
    train = (time.perf_counter() - started) / len(x)
    started = time.perf_counter()
    model.evaluate(x, y, batch_size=batch, verbose=0)
    evaluate = (time.perf_counter() - started) / len(x)
    return {"train_s_per_image": train, "eval_s_per_image": evaluate, "setup_s": setup, "images": len(x)}


def time_cells(cells: list[list[str]], steps: int = 40) -> dict:
    """Every cell's timing (same order), and the seconds this process took to import TensorFlow."""
    from fashion_lab.model import tf_settings

    tf_settings.quiet_import()  # the TensorFlow import a sweep pays once
    import keras  # noqa: F401

    imported = time.perf_counter() - START
    return {"import_s": imported, "cells": [_timed_cell(c, steps) for c in cells]}
