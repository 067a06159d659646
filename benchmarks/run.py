"""fashion-lab benchmarks: every comparison runs A/B interleaved in one invocation, median and spread.

    python benchmarks/run.py                 # the issue's benchmarks on a small subset (a few minutes)
    python benchmarks/run.py --knobs         # + CPU knobs (XLA, tf.data, threads, oneDNN, batch size)
    python benchmarks/run.py --parallel      # + sweep points/hour: 1 job x 2 cores vs 2 jobs x 1 core
    python benchmarks/run.py --smoke         # tiny sizes, one repeat (CI: keeps the runner from rotting)
    python benchmarks/run.py --full          # full training set (about 2 minutes per epoch per side)
    python benchmarks/run.py --only cli_startup --repeats 10

Each measurement is a fresh process (benchmarks/workers.py), so no TensorFlow state leaks between
A and B. Order alternates A,B / B,A across repeats to cancel drift. Prints ONE table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FULL_TRAIN, FULL_VAL = 55000, 5000
# The oneDNN setting every measured process gets unless a knob says otherwise: the one the CLI ships.
SHIPPED_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1"}


# --------------------------------------------------------------------------- processes

def env(**extra) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    e["TF_CPP_MIN_LOG_LEVEL"] = "2"
    for k, v in SHIPPED_ENV.items():
        e.setdefault(k, v)
    e.update(extra)
    return e


IN_PROCESS = False  # --smoke: call the workers here (one TensorFlow start) instead of fresh processes


def worker(name: str, args: dict, extra_env: dict | None = None, timeout: float = 1800) -> dict:
    if IN_PROCESS:
        sys.path.insert(0, str(HERE))
        import workers

        saved = dict(os.environ)
        os.environ.update(extra_env or {})
        try:
            return json.loads(json.dumps(workers.WORKERS[name](args)))
        finally:
            os.environ.clear()
            os.environ.update(saved)
    proc = subprocess.run([sys.executable, str(HERE / "workers.py"), name, json.dumps(args)],
                          capture_output=True, text=True, env=env(**(extra_env or {})), timeout=timeout,
                          stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"worker {name} {args} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def interleaved(repeats: int, a, b) -> tuple[list, list]:
    """Run a() and b() `repeats` times each, alternating which goes first."""
    ra, rb = [], []
    for i in range(repeats):
        for side in ((a, ra), (b, rb)) if i % 2 == 0 else ((b, rb), (a, ra)):
            side[1].append(side[0]())
    return ra, rb


def med(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return statistics.median(xs) if xs else float("nan")


def spread(xs) -> str:
    """Median with the min..max range, as relative half-range in percent."""
    xs = [x for x in xs if math.isfinite(x)]
    if len(xs) < 2:
        return ""
    m = statistics.median(xs)
    return f" ±{100 * (max(xs) - min(xs)) / 2 / m:.0f}%" if m else ""


def steady(epochs: list[float]) -> float:
    """Median epoch time after the first (compile) epoch."""
    return med(epochs[1:] if len(epochs) > 1 else epochs)


# --------------------------------------------------------------------------- table

ROWS: list[dict] = []


def row(name, a, b, value, target, met, note=""):
    ROWS.append(dict(name=name, a=a, b=b, value=value, target=target, met=met, note=note))


def fmt(x, unit="", digits=3):
    if isinstance(x, str):
        return x
    if x is None or not math.isfinite(x):
        return "nan"
    return f"{x:.{digits}g}{unit}"


def print_table(out=sys.stdout):
    head = ["benchmark", "A", "B", "ratio/value", "target", "met"]
    cells = [[r["name"], r["a"], r["b"], r["value"], r["target"],
              {True: "met", False: "MISSED", None: "info"}[r["met"]]] for r in ROWS]
    widths = [max(len(str(c[i])) for c in [head] + cells) for i in range(len(head))]
    line = lambda c: "| " + " | ".join(str(v).ljust(w) for v, w in zip(c, widths)) + " |"
    print(line(head), file=out)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)
    for c in cells:
        print(line(c), file=out)
    notes = [f"- {r['name']}: {r['note']}" for r in ROWS if r["note"]]
    if notes:
        print("\n" + "\n".join(notes), file=out)


# --------------------------------------------------------------------------- machine

CPU_FEATURES = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_vnni", "avx512f", "avx2", "fma")


def cpu_info() -> tuple[str, list[str]]:
    """The CPU model and which of the features that matter for bf16 it has (Linux /proc/cpuinfo)."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, [f for f in CPU_FEATURES if f in flags]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------- FLOPs

def tutorial_flops(filters=(32, 64), convs=2, kernel=3, dense=512, classes=10, size=28, channels=1):
    """[(layer, forward FLOPs per image)]: 2 x MACs of each conv/dense layer (BN, ReLU, pooling ignored)."""
    layers, c_in, hw = [], channels, size
    for stack, f in enumerate(filters):
        for i in range(convs):
            layers.append((f"conv{len(layers) + 1} {hw}x{hw}x{c_in}->{f}", 2 * hw * hw * f * kernel * kernel * c_in))
            c_in = f
        hw //= 2
    flat = hw * hw * c_in
    layers.append((f"dense {flat}->{dense}", 2 * flat * dense))
    layers.append((f"dense {dense}->{classes}", 2 * dense * classes))
    return layers


def flop_table() -> str:
    layers = tutorial_flops()
    total = sum(f for _, f in layers)
    lines = ["| layer | forward MFLOP/image | share | training MFLOP/image (≈3x) |", "|---|---|---|---|"]
    for name, f in layers:
        lines.append(f"| {name} | {f / 1e6:.2f} | {100 * f / total:.1f}% | {3 * f / 1e6:.2f} |")
    lines.append(f"| **total** | **{total / 1e6:.2f}** | 100% | **{3 * total / 1e6:.1f}** |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- benchmarks

class Bench:
    def __init__(self, a):
        self.a = a
        self.n_train = FULL_TRAIN if a.full else (300 if a.smoke else a.train_samples)
        self.n_val = FULL_VAL if a.full else (100 if a.smoke else a.val_samples)
        self.epochs = 2 if a.smoke else a.epochs
        self.repeats = 1 if a.smoke else a.repeats
        self.train_result = None  # reused by the FLOP benchmark

    # common argument sets for the two training scripts
    def plain_argv(self, *extra):
        train = [] if self.a.full else ["--train-samples", str(self.n_train)]
        return train + ["--val-samples", str(self.n_val), "--epochs", str(self.epochs), *extra]

    def fl_overrides(self, *extra):
        if self.a.smoke:  # synthetic: no 10000-image test pass per run, no files needed
            data = ["data=synthetic", f"data.synthetic_train={self.n_train + self.n_val}", "data.synthetic_test=100"]
        elif self.a.full:
            data = ["data=fashion_mnist"]
        else:
            data = ["data=small", f"data.train_samples={self.n_train}"]
        return data + [f"data.val_samples={self.n_val}", f"trainer.epochs={self.epochs}", *extra]

    def full_epoch_seconds(self, subset_epoch: float) -> float:
        """A full-data epoch estimated from a subset epoch (time scales with images seen)."""
        return subset_epoch * (FULL_TRAIN + FULL_VAL) / (self.n_train + self.n_val)

    def training(self):
        """training overhead (plain vs fashion-lab, tracking on) and tracking overhead (off vs on)."""
        r = worker("train_ab", {"overrides": self.fl_overrides(), "repeats": self.repeats})
        P, T, U = r["plain"], r["tracked"], r["untracked"]
        p = [steady(r["epoch_seconds"]) for r in P]
        t = [steady(r["epoch_seconds"]) for r in T]
        u = [steady(r["epoch_seconds"]) for r in U]
        ratios = [b / a for a, b in zip(p, t)]
        ratio = med(ratios)
        names = ["plain", "tracked", "untracked"]
        per_epoch = "; ".join(
            f"repeat {i + 1} (order {'>'.join(names[i % 3:] + names[:i % 3])}): " + ", ".join(
                f"{name} " + "/".join(f"{e:.2f}" for e in r[name][i]["epoch_seconds"]) for name in names)
            for i in range(len(P)))
        row("training overhead (s/epoch, epoch 1+)", fmt(med(p), " s") + spread(p), fmt(med(t), " s") + spread(t),
            f"{ratio:.3f}", "≤ 1.02", ratio <= 1.02,
            "A = benchmarks/tutorial_keras.py network + fit, B = fashion-lab train(cfg) with MLflow on, same "
            "process and arrays, rotated per repeat; ratio = median of per-repeat B/A ("
            + " ".join(f"{x:.3f}" for x in ratios) + "); seconds per epoch: " + per_epoch)
        p0 = [r["epoch_seconds"][0] for r in P]
        t0 = [r["epoch_seconds"][0] for r in T]
        row("first epoch incl. compile (s)", fmt(med(p0), " s"), fmt(med(t0), " s"),
            f"{med([b / a for a, b in zip(p0, t0)]):.3f}", "info", None)
        imgs = lambda e: self.n_train / e
        row("training images/s", fmt(imgs(med(p)), "", 4), fmt(imgs(med(t)), "", 4),
            f"{imgs(med(t)) / imgs(med(p)):.3f}", "info", None, "images/s = training images / epoch seconds "
            "(the epoch includes the validation pass)")
        full_epoch = self.full_epoch_seconds(med(t))
        per_epoch = med([r["record_per_epoch"] for r in T])
        per_run = med([r["record_per_run"] for r in T])
        row("tracking: s added per epoch (direct)", fmt(med(u), " s") + " off", fmt(med(t), " s") + " on",
            f"{per_epoch * 1000:.1f} ms = {100 * per_epoch / full_epoch:.3f}% of full epoch", "< 1%",
            per_epoch / full_epoch < 0.01,
            f"full-data epoch estimated at {full_epoch:.0f} s from the subset; A/B columns are the tracking "
            f"off/on epoch times (on/off = {med([b / a for a, b in zip(u, t)]):.3f})")
        wall_diff = med([b["wall"] - a["wall"] for a, b in zip(U, T)])
        files = med([r["artifact_files"] for r in T])
        row("tracking: s added per run (direct)", fmt(wall_diff, " s") + " wall on-off", fmt(files, " s") + " files",
            f"{per_run:.2f} s = {100 * per_run / full_epoch:.2f}% of full epoch", "< 1%",
            per_run / full_epoch < 0.01,
            "per run = MLflow client calls (run, params, dataset, final metrics, artifact upload) + writing the "
            "artifact files (plots, weights, CSVs); 'files' = the artifact files alone; creating a NEW sqlite "
            f"store (schema migrations, once per store) took {med([r['store_seconds'] for r in T]):.1f} s more. "
            "'wall on-off' = whole train() wall time difference (noisy)")
        self.train_result = (med(t), T)

    def cli_startup(self):
        n = max(3, self.repeats * 3)
        time_cmd = lambda cmd: (lambda: self._wall(cmd))
        bare, helped = interleaved(n, time_cmd([sys.executable, "-c", "pass"]),
                                   time_cmd([sys.executable, "-m", "fashion_lab.cli.main", "--help"]))
        value = med(helped)
        row("CLI start-up: fashion-lab --help", fmt(med(bare), " s") + " bare python",
            fmt(value, " s") + spread(helped), fmt(value, " s"), "< 0.3 s", value < 0.3,
            f"median of {n}; A = `python -c pass` (interpreter alone)")

    def _wall(self, cmd) -> float:
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env(), check=True, stdin=subprocess.DEVNULL)
        return time.perf_counter() - start

    def data_load(self):
        r = worker("data_load", {"repeats": max(2, self.repeats)})
        warm = med(r["warm"])
        row("data load: full Fashion-MNIST", fmt(med(r["cold"]), " s") + " cold", fmt(warm, " s") + " warm",
            fmt(warm, " s") + f" (cold/warm {med(r['cold']) / warm:.0f}x)", "warm < 0.5 s", warm < 0.5,
            "cold = data.cache=false (decompress + sha256 + parse the Debian .gz files; OS page cache warm); "
            "warm = data.cache=true (verified parsed-array cache, fashion_lab/data/__init__.py)")

    def memory(self):
        trials = 2 if self.a.smoke else self.a.trials
        # The target: a search's process across many trials, in-process trials (A) vs the shipped
        # trials in worker processes (B: warm workers, replaced every tuner.trials_per_worker trials).
        modes = [("trials in the search process", ["tuner.fresh_process=false"]),
                 ("trials in worker processes (default)", [])]
        for label, extra in modes[1:] if self.a.smoke else modes:  # smoke: the shipped mode only
            series = worker("tune_memory", {"trials": trials, "overrides": extra})
            rss, peaks = series["trial_rss_mb"], series["trial_process_peak_rss_mb"]
            growth = rss[-1] - rss[1]
            note = "search process RSS per trial: " + " ".join(f"{x:.0f}" for x in rss)
            if peaks:
                note += f"; largest trial process peak {max(peaks):.0f} MB"
            row(f"memory: tune RSS growth trial 2->{trials}, {label}", fmt(rss[1], " MB", 4),
                fmt(rss[-1], " MB", 4), fmt(growth, " MB"), "< 50 MB", growth < 50, note)
        # Why: plain train() calls in one process (a notebook loop) keep TensorFlow's graphs.
        ov = ["data=synthetic", "data.synthetic_train=200", "data.synthetic_test=100", "data.val_samples=60",
              "trainer.epochs=1", "trainer.batch_size=32"]
        rss = worker("memory", {"trials": trials, "overrides": ov, "clear_session": True})["rss_mb"]
        row(f"memory: train() x{trials} in one process (clear_session)", fmt(rss[1], " MB", 4),
            fmt(rss[-1], " MB", 4), fmt(rss[-1] - rss[1], " MB"), "info", None,
            "RSS per call: " + " ".join(f"{x:.0f}" for x in rss))

    def efficiency(self):
        if self.train_result is None:
            self.training()
        epoch, _ = self.train_result
        forward = sum(f for _, f in tutorial_flops())
        achieved = (3 * forward * self.n_train + forward * self.n_val) / epoch
        peak = med(worker("matmul", {"n": 512 if self.a.smoke else 2048, "repeats": 3})["flops"])
        row("arithmetic efficiency", fmt(achieved / 1e9, " GFLOP/s") + " train", fmt(peak / 1e9, " GFLOP/s")
            + " matmul", f"{achieved / peak:.3f}", "report", None,
            f"{3 * forward / 1e6:.1f} MFLOP per training image, {forward / 1e6:.1f} per validation image; "
            "peak = tf.matmul float32 2048^2 in this run")

    def precision(self):
        """float32 vs mixed_bfloat16: epoch time side by side and accuracy over seeds (one per repeat)."""
        batches = [32] if self.a.smoke else [32, 128]
        repeats = 1 if self.a.smoke else max(3, self.repeats)  # 3 seeds at least: the accuracy comparison
        r = worker("precision_ab", {"overrides": self.fl_overrides(), "repeats": repeats, "batch_sizes": batches,
                                    "precisions": ["float32", "mixed_bfloat16"]})["runs"]
        model, features = cpu_info()
        pick = lambda p, b: [x for x in r if x["precision"] == p and x["batch"] == b]
        for batch in batches:
            f32, bf16 = pick("float32", batch), pick("mixed_bfloat16", batch)
            a = [steady(x["epoch_seconds"]) for x in f32]
            b = [steady(x["epoch_seconds"]) for x in bf16]
            ratio = med([y / x for x, y in zip(a, b)])
            row(f"precision bf16/f32 (s/epoch, batch {batch})", fmt(med(a), " s") + spread(a) + " float32",
                fmt(med(b), " s") + spread(b) + " bf16", f"{ratio:.3f}", "< 1 = bf16 faster", None,
                f"{model}; features {' '.join(features) or 'none'}; per-seed ratios "
                + " ".join(f"{y / x:.2f}" for x, y in zip(a, b)) + "; first epochs (compile) f32 "
                + " ".join(f"{x['epoch_seconds'][0]:.1f}" for x in f32) + " / bf16 "
                + " ".join(f"{x['epoch_seconds'][0]:.1f}" for x in bf16))
            acc = lambda runs, key: [x[key] for x in runs]
            fa, ba = acc(f32, "test_accuracy"), acc(bf16, "test_accuracy")
            diff = med([y - x for x, y in zip(fa, ba)])
            row(f"precision bf16-f32 test accuracy (batch {batch})", f"{med(fa):.4f} float32",
                f"{med(ba):.4f} bf16", f"{100 * diff:+.2f} pt", "info", None,
                f"{len(fa)} seeds, {self.epochs} epochs on {self.n_train} images; per seed (f32/bf16): "
                + " ".join(f"{x:.3f}/{y:.3f}" for x, y in zip(fa, ba)) + "; best val accuracy f32 "
                + " ".join(f"{x:.3f}" for x in acc(f32, "best_val_accuracy")) + ", bf16 "
                + " ".join(f"{x:.3f}" for x in acc(bf16, "best_val_accuracy")))

    def autotune(self):
        """fashion-lab's default pipeline (tf.data's autotuner off) vs data.tf_autotune=true, seed for seed."""
        repeats = 1 if self.a.smoke else max(3, self.repeats)
        r = worker("overrides_ab", {"overrides": self.fl_overrides(), "repeats": repeats,
                                    "a": ["data.tf_autotune=true"], "b": []})
        A, B = r["a"], r["b"]
        mean = lambda runs: [statistics.mean(x["epoch_seconds"][1:] or x["epoch_seconds"]) for x in runs]
        a, b = mean(A), mean(B)
        ratio = med([y / x for x, y in zip(a, b)])
        same = all(x["loss"] == y["loss"] and x["val_accuracy"] == y["val_accuracy"] for x, y in zip(A, B))
        model, _ = cpu_info()
        row("tf.data autotuner off/on (mean s/epoch, epoch 1+)", fmt(med(a), " s") + spread(a) + " on",
            fmt(med(b), " s") + spread(b) + " off (default)", f"{ratio:.3f}", "< 1 = off faster", None,
            f"{model}; train(cfg) untracked, same arrays and seed per repeat, alternated; mean, not median, "
            "since the stalls hit some epochs only; epoch seconds on: "
            + "; ".join("/".join(f"{e:.1f}" for e in x["epoch_seconds"]) for x in A) + "; off: "
            + "; ".join("/".join(f"{e:.1f}" for e in x["epoch_seconds"]) for x in B)
            + f"; loss and val_accuracy histories {'identical' if same else 'DIFFER'} seed for seed")

    def trial_start(self):
        """Per-trial start-up: a fresh process per trial (the old default) vs a warm worker (TF loaded)."""
        n = 300 if self.a.smoke else self.a.trial_samples
        ov = ["data=synthetic", f"data.synthetic_train={n + max(60, n // 10)}", "data.synthetic_test=300",
              f"data.val_samples={max(60, n // 10)}", f"trainer.epochs={1 if self.a.smoke else 2}"]
        r = worker("trial_start", {"overrides": ov, "repeats": self.repeats if self.a.smoke else max(3, self.repeats)})
        F, W, P = r["fresh"], r["warm"], r["in_process"]
        col = lambda runs, key: [x[key] for x in runs]
        per_worker = 10  # the shipped tuner.trials_per_worker
        for key, label in (("startup", "TF imported"), ("first_step", "first training step")):
            fs, ws, first = med(col(F, key)), med(col(W, key)), r["first_warm"][key]
            amortized = ws + (first - ws) / per_worker  # a worker's first trial pays the start, the rest do not
            row(f"trial start: call -> {label} (s)", fmt(fs, " s") + spread(col(F, key)) + " fresh",
                fmt(amortized, " s") + f" warm, N={per_worker}", f"{amortized / fs:.3f}", "< 1 = warm cheaper",
                None, f"warm worker: {ws:.2f} s per trial once running, its first trial {first:.2f} s, "
                f"amortized over {per_worker} trials; in this process (fresh_process=false) "
                f"{med(col(P, key)):.2f} s; fresh: spawn {med(col(F, 'spawn')):.2f} s, TF import etc. "
                f"{med(col(F, 'startup')):.2f} s")
        fw, ww, pw = med(col(F, "wall")), med(col(W, "wall")), med(col(P, "wall"))
        train_s = med(col(F, "train_seconds") + col(W, "train_seconds"))
        row("trial wall (s, synthetic trial)", fmt(fw, " s") + spread(col(F, "wall")) + " fresh",
            fmt(ww, " s") + spread(col(W, "wall")) + " warm", f"{ww / fw:.3f}", "< 1 = warm cheaper", None,
            f"{n} synthetic images x {1 if self.a.smoke else 2} epochs, fit {train_s:.1f} s; in the calling "
            f"process (tuner.fresh_process=false) {pw:.2f} s; the fresh trial's start (to first step) was "
            f"{100 * med(col(F, 'first_step')) / fw:.0f}% of its wall time; warm worker RSS after each trial "
            + " ".join(f"{x:.0f}" for x in col(W, "rss_mb")) + " MB")

    # --- knobs: the plain script with one setting changed; ratio = B/A steady epoch time (<1 = faster)
    KNOBS = {
        "xla": ([], ["--jit"], {}, {}),
        "tf_data": ([], ["--pipeline", "tf_data"], {}, {}),
        "no_autotune": ([], ["--pipeline", "no_autotune"], {}, {}),
        "threads_1": ([], ["--intra", "1", "--inter", "1"], {}, {}),
        "threads_2x1": ([], ["--intra", "2", "--inter", "1"], {}, {}),
        "onednn": ([], [], {"TF_ENABLE_ONEDNN_OPTS": "0"}, {"TF_ENABLE_ONEDNN_OPTS": "1"}),
        "batch_256": (["--batch-size", "128"], ["--batch-size", "256"], {}, {}),
        "batch_32": (["--batch-size", "128"], ["--batch-size", "32"], {}, {}),
        "terminate_on_nan": ([], ["--terminate-on-nan"], {}, {}),
    }

    def knob(self, name):
        a_argv, b_argv, a_env, b_env = self.KNOBS[name]
        A, B = interleaved(self.repeats, lambda: worker("plain_keras", {"argv": self.plain_argv(*a_argv)}, a_env),
                           lambda: worker("plain_keras", {"argv": self.plain_argv(*b_argv)}, b_env))
        a = [steady(r["epoch_seconds"]) for r in A]
        b = [steady(r["epoch_seconds"]) for r in B]
        ratio = med([y / x for x, y in zip(a, b)])
        acc = lambda rs: med([r["val_accuracy"][-1] for r in rs])
        note = f"val_accuracy after {self.epochs} epochs: A {acc(A):.3f}, B {acc(B):.3f}"
        if name.startswith("batch"):  # a different batch size does different work per epoch: images/s
            note += "; ratio is B/A epoch time at equal images"
        row(f"knob {name} (s/epoch)", fmt(med(a), " s") + spread(a), fmt(med(b), " s") + spread(b),
            f"{ratio:.3f}", "< 1 = faster", None, note)

    def parallel(self):
        points = 2 if self.a.smoke else self.a.points
        seeds = ",".join(map(str, range(points)))
        n = 200 if self.a.smoke else self.a.parallel_samples
        base = ["train", "-m", "data=small", f"data.train_samples={n}", f"data.val_samples={max(100, n // 5)}",
                "trainer.epochs=1", "trainer.verbose=0", f"trainer.seed={seeds}"]

        def sweep(extra):
            def go():
                with tempfile.TemporaryDirectory() as tmp:
                    # Create the store first: parallel points racing to migrate a NEW sqlite file fail
                    # ("table _alembic_tmp_experiments already exists"); an existing store is the real case.
                    subprocess.run([sys.executable, "-c", "import mlflow; mlflow.MlflowClient("
                                    f"'sqlite:///{tmp}/m.db').search_experiments()"], env=env(), check=True,
                                   capture_output=True, stdin=subprocess.DEVNULL)
                    cmd = [sys.executable, "-m", "fashion_lab.cli.main", *base, f"tracking.uri=sqlite:///{tmp}/m.db",
                           f"hydra.sweep.dir={tmp}/multirun", *extra]
                    start = time.perf_counter()
                    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env(),
                                          stdin=subprocess.DEVNULL)
                    if proc.returncode:
                        raise RuntimeError(f"sweep failed: {proc.stderr[-3000:]}")
                    return points * 3600 / (time.perf_counter() - start)
            return go

        seq, par = interleaved(max(1, self.repeats // 2) if not self.a.smoke else 1, sweep([]),
                               sweep(["hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.threads=1"]))
        ratio = med(par) / med(seq)
        row("parallel points/hour (2 jobs x 1 core vs 1 x 2)", fmt(med(seq), "/h", 4) + " 1x2",
            fmt(med(par), "/h", 4) + " 2x1", f"{ratio:.2f}", "> 1 = 2x1 wins", None,
            f"{points} points of data=small train_samples={n}, 1 epoch each, whole CLI sweep wall time "
            "(start-up, data, test evaluation and MLflow included)")


GROUPS = ["training", "cli_startup", "data_load", "memory", "efficiency", "precision", "trial_start",
          "autotune"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="full training set (55000/5000)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (CI)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", action="append", default=[],
                   help=f"run only this benchmark (repeatable): {', '.join(GROUPS)}, parallel, knob names "
                        f"({', '.join(Bench.KNOBS)}) or 'knobs'")
    p.add_argument("--knobs", action="store_true", help="also measure the CPU knobs")
    p.add_argument("--parallel", action="store_true", help="also measure sweep points/hour 1x2 vs 2x1")
    p.add_argument("--train-samples", type=int, default=2000)
    p.add_argument("--val-samples", type=int, default=500)
    p.add_argument("--epochs", type=int, default=3, help="first epoch (compile) is excluded from s/epoch")
    p.add_argument("--trials", type=int, default=20, help="memory benchmark: train() calls in one process")
    p.add_argument("--points", type=int, default=4, help="parallel benchmark: sweep points per side")
    p.add_argument("--parallel-samples", type=int, default=1000)
    p.add_argument("--trial-samples", type=int, default=2500, help="trial_start: synthetic training images")
    p.add_argument("--markdown", type=Path, help="also write the table to this file")
    a = p.parse_args(argv)

    global IN_PROCESS
    IN_PROCESS = a.smoke
    bench = Bench(a)
    selected = list(a.only) or (GROUPS + (["knobs"] if a.knobs else []) + (["parallel"] if a.parallel else []))
    started, load_before = time.perf_counter(), load_average()
    for name in selected:
        if name == "knobs":
            for k in Bench.KNOBS:
                bench.knob(k)
        elif name in Bench.KNOBS:
            bench.knob(name)
        elif name in GROUPS or name == "parallel":
            getattr(bench, name)()
        else:
            p.error(f"--only {name!r}: choose from {', '.join(GROUPS + ['parallel', 'knobs', *Bench.KNOBS])}")
    model, features = cpu_info()
    print(f"\nCPU: {model}, {os.cpu_count()} cores, features: {' '.join(features) or 'none'}; "
          f"load average before {load_before}, after {load_average()}")
    print(f"fashion-lab benchmarks: train {bench.n_train} / val {bench.n_val} images, {bench.epochs} epochs, "
          f"{bench.repeats} repeat(s), {os.cpu_count()} CPUs, oneDNN "
          f"{env().get('TF_ENABLE_ONEDNN_OPTS')}, {time.perf_counter() - started:.0f} s\n")
    print_table()
    if a.markdown:
        with open(a.markdown, "w") as out:
            print_table(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
