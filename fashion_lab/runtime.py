"""Process-wide TensorFlow settings a run needs: seeds, determinism, threads, progress output."""

from __future__ import annotations

import sys

_threads_set: bool = False


def configure(trainer_cfg) -> None:
    """Seed Python, NumPy and TensorFlow; optionally op determinism and thread counts."""
    global _threads_set
    import keras
    import tensorflow as tf

    if trainer_cfg.threads and not _threads_set:
        try:  # only possible before TensorFlow starts its runtime; later runs in a process keep it
            tf.config.threading.set_intra_op_parallelism_threads(int(trainer_cfg.threads))
            tf.config.threading.set_inter_op_parallelism_threads(1)
            _threads_set = True
        except RuntimeError:
            pass
    keras.utils.set_random_seed(int(trainer_cfg.seed))
    if trainer_cfg.deterministic:
        tf.config.experimental.enable_op_determinism()


def keras_verbosity(verbose) -> int:
    """Keras progress: a bar on a terminal, one line per epoch in logs and CI."""
    if str(verbose) == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)
