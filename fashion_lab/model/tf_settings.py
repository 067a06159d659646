"""Process-wide TensorFlow settings a run needs: seeds, determinism, threads, progress output."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

_threads_set: bool = False
_bf16_warned: bool = False
TF_LOGS_ENV = "FASHION_LAB_TF_LOGS"  # "1": TensorFlow's own start-up and retracing messages are shown
# TensorFlow's C++ start-up lines (oneDNN notice, "Could not find cuda drivers", "failed call to cuInit", absl's
# pre-init warning) go straight to fd 2 before absl reads TF_CPP_MIN_LOG_LEVEL, so only the fd can be quieted.
_NOISE = re.compile(r"^([IWEF]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\]|WARNING: All log messages before absl::"
                    r"InitializeLog\(\) is called are written to STDERR)")


def show_tf_logs(verbose) -> None:
    """``trainer.verbose=debug`` asks for TensorFlow's own messages; call before TensorFlow is imported
    (worker processes inherit it through the environment)."""
    if str(verbose) == "debug":
        os.environ[TF_LOGS_ENV] = "1"


def quiet_import() -> None:
    """Import TensorFlow and find its devices with fd 2 captured: its start-up lines are dropped, anything
    else it printed is passed on. A no-op once TensorFlow is imported, or with FASHION_LAB_TF_LOGS=1."""
    # The kernels the command line uses (cli/main.py): a run trained through the Python API reproduces exactly
    # through `fashion-lab reproduce` (oneDNN is off by default on AMD CPUs). Read when TensorFlow is imported.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    if "tensorflow" in sys.modules or os.environ.get(TF_LOGS_ENV) == "1":
        return
    import logging

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe ("failed call to cuInit") happens here
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(keepends=True)
                    if not _NOISE.match(line)]
            with contextlib.suppress(OSError):
                sys.stderr.write("".join(kept))
    tf.get_logger().setLevel(logging.ERROR)  # "tf.function retracing" warnings: sweeps rebuild models on purpose


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
    _warn_slow_bf16(getattr(trainer_cfg.precision, "value", trainer_cfg.precision),
                    lambda: bool(tf.config.list_physical_devices("GPU")))


def bf16_warning(precision: str, cpuinfo: str, has_gpu) -> str | None:
    """A warning when bfloat16 compute would run on a CPU without native bfloat16 (no AVX512-BF16, no AMX): there
    every op converts, and a run was measured 9-21 times slower than float32 (benchmarks/README.md)."""
    if precision != "mixed_bfloat16" or not cpuinfo:
        return None
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                      if line.startswith("flags")), []))
    if {"avx512_bf16", "amx_bf16"} & flags or has_gpu():
        return None
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 "this CPU")
    return (f"trainer.precision=mixed_bfloat16 on {model}, which has no AVX512-BF16 or AMX: bfloat16 is emulated "
            f"there, measured 9-21x slower than float32; trainer.precision=float32 (experiment=tutorial rather "
            f"than experiment=fast) is the fast choice on this machine")


def _warn_slow_bf16(precision: str, has_gpu) -> None:
    global _bf16_warned
    if _bf16_warned or precision != "mixed_bfloat16":
        return  # once per process (a sweep's points share one warning); float32 runs read nothing
    try:
        cpuinfo = open("/proc/cpuinfo", encoding="utf-8").read()
    except OSError:
        return  # not Linux: nothing known, nothing said
    if warning := bf16_warning(precision, cpuinfo, has_gpu):
        print(f"fashion-lab: warning: {warning}", file=sys.stderr)
        _bf16_warned = True


def keras_verbosity(verbose) -> int:
    """Keras progress: a bar on a terminal, one line per epoch in logs and CI."""
    if str(verbose) == "auto":
        return 1 if sys.stdout.isatty() else 2
    return 2 if str(verbose) == "debug" else int(verbose)
