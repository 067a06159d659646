"""Packed seeds (``sweep.pack=K``): training time per tower, K towers in one fit against one single run.

    PYTHONPATH=$PWD python benchmarks/packed_seeds.py                     # K = 1, 2, 4, 8; float32 and bf16
    PYTHONPATH=$PWD python benchmarks/packed_seeds.py --steps 2 --repeats 2 --ks 1 2 4 8   # what README's row ran

The tutorial network (full size, batch 32) on synthetic 28x28 images, a fixed number of steps per fit.
Each model is built and run for 2 untimed steps (tracing), then timed from the end of its first step
to the end of its last (``--steps`` steps: fit's start-up left out). Single and packed
alternate per repeat (single, packed / packed, single: ABAB), so load from other processes hits both
alike; the table has the median per-step time of each and the ratio (packed / K) / single: below 1,
packing gains per tower. Prints the CPU model first (lscpu).

Prediction, written before the first run (2-vCPU AMD EPYC, no AVX512 at all, so no AMX and no
AVX512-BF16; shared with other jobs): little or no gain per tower on the CPU, ratio 0.85-1.05 for
every K, because one tutorial network's convolutions at batch 32 already keep both cores busy; packing
saves only the per-step Python and launch overhead, small against ~60 ms of convolutions per step.
mixed_bfloat16 slower than float32 (ratio bf16/float32 > 1), because without native bf16 every
convolution converts to and from float32. The gain is expected on a GPU, where one tutorial network
uses a sliver of the chip: that row is still owed (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no lscpu)"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    native = [f for f in ("amx_bf16", "avx512_bf16", "avx512f") if f in flags] or ["no AVX512, no AMX"]
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs, {', '.join(native)}"


def _config(precision: str, steps: int):
    from fashion_lab.config import compose

    images = (steps + 1) * 32
    return compose(["data=synthetic", f"data.synthetic_train={images + 100}", "data.val_samples=100",
                    "data.synthetic_test=100", "tracking.enabled=false", "trainer.verbose=0",
                    f"trainer.precision={precision}"])


def step_seconds(precision: str, k: int, steps: int, splits) -> float:
    """Seconds per step: one single model (k=0) or k packed towers, after one untimed fit (tracing)."""
    import keras

    from fashion_lab.run.fit_data import dataset
    from fashion_lab.run.packed import _packed_data, _towers, compiled_packed
    from fashion_lab.run.train import _compiled_model

    keras.backend.clear_session()
    cfg = _config(precision, steps)
    if k == 0:
        keras.utils.set_random_seed(0)
        model = _compiled_model(cfg, splits)
        data = {"x": dataset(splits.x_train, splits.y_train, batch_size=32, shuffle=True)}
    else:
        cfgs = [cfg.copy() for _ in range(k)]
        for seed, one in enumerate(cfgs):
            one.trainer.seed = seed
        towers, per_tower = _towers(cfgs, splits)
        model = compiled_packed(cfg, towers, splits.input_shape)  # as train_packed compiles it
        data = {"x": _packed_data(cfg, per_tower, splits)["x"]}
    model.fit(x=data["x"].take(2), epochs=1, verbose=0, shuffle=False)  # traces the step
    clock = _clock()
    model.fit(**data, epochs=1, verbose=0, shuffle=False, callbacks=[clock])
    return (clock.ends[-1] - clock.ends[0]) / (len(clock.ends) - 1)  # fit's start-up and first batch left out


def _clock():
    import keras

    class BatchClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends: list[float] = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    return BatchClock()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per fit (batch 32)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    args = parser.parse_args(argv)
    from fashion_lab.data import load_data

    print(f"CPU: {cpu_model()}", flush=True)
    splits = load_data(_config("float32", args.steps).data)
    times: dict = {}
    for repeat in range(args.repeats):
        for precision in args.precisions if repeat % 2 == 0 else reversed(args.precisions):
            for k in args.ks:
                order = [0, k] if (repeat + k) % 2 == 0 else [k, 0]  # ABAB: who goes first alternates
                for which in order:
                    seconds = step_seconds(precision, which, args.steps, splits)
                    times.setdefault((precision, k, which), []).append(seconds)
                    print(f"repeat {repeat + 1} {precision} K={k} {'packed' if which else 'single'}: "
                          f"{seconds:.4f} s/step", file=sys.stderr, flush=True)
    print(f"\n{'precision':<15} {'K':>2} {'single s/step':>13} {'packed s/step':>13} {'per tower':>9} "
          f"{'packed/K ÷ single':>17}")
    for precision in args.precisions:
        for k in args.ks:
            single = statistics.median(times[(precision, k, 0)])
            packed = statistics.median(times[(precision, k, k)])
            print(f"{precision:<15} {k:>2} {single:>13.4f} {packed:>13.4f} {packed / k:>9.4f} {packed / k / single:>17.2f}")
    for k in args.ks:
        if all(p in args.precisions for p in ("float32", "mixed_bfloat16")):
            ratio = statistics.median(times[("mixed_bfloat16", k, k)]) / statistics.median(times[("float32", k, k)])
            print(f"bf16 ÷ float32, packed K={k}: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
