"""How long does `fashion-lab report` take on a store of 1,000 runs?

Generates a sweep of N child runs directly with MlflowClient (no training: a few params, final
metrics and 3 epochs of val_accuracy each), then times the tidy reader and the whole report.

    python benchmarks/report_scale.py [--runs 1000] [--dir /tmp/report-scale]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's fashion_lab


def generate(uri: str, runs: int) -> str:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("fashion-lab", tags={"mlflow.experimentKind": "custom_model_development"})
    parent = client.create_run(exp, run_name="scale", tags={
        "fashion_lab.role": "sweep", "fashion_lab.strategy": "grid", "fashion_lab.sweep_name": "scale",
        "fashion_lab.swept_keys": "model.bn_placement,optimizer.learning_rate"}).info.run_id
    client.set_tag(parent, "fashion_lab.sweep_id", parent)
    grid = list(itertools.product(("after", "before", "none"), (0.001, 0.01, 0.1)))
    rng = __import__("numpy").random.default_rng(0)
    started = time.perf_counter()
    for i in range(runs):
        bn, lr = grid[i % len(grid)]
        seed = i // len(grid)
        run_id = client.create_run(exp, run_name=f"{bn} lr={lr} s{seed}").info.run_id
        now = int(time.time() * 1000)
        acc = 0.85 + 0.01 * (bn == "after") - 0.02 * (lr == 0.1) + rng.normal(0, 0.005)
        client.log_batch(
            run_id,
            params=[Param("model.bn_placement", bn), Param("optimizer.learning_rate", str(lr)),
                    Param("trainer.seed", str(seed)), Param("trainer.epochs", "3")],
            metrics=[Metric("test_accuracy", acc, now, 0), Metric("best_val_accuracy", acc + 0.01, now, 0)]
            + [Metric("val_accuracy", acc - 0.1 / (e + 1), now, e) for e in range(3)],
            tags=[RunTag("mlflow.parentRunId", parent), RunTag("fashion_lab.sweep_id", parent),
                  RunTag("fashion_lab.role", "point"), RunTag("fashion_lab.seed", str(seed))])
        client.set_terminated(run_id, "FINISHED")
        if (i + 1) % 100 == 0:
            print(f"\rgenerated {i + 1}/{runs} runs ({time.perf_counter() - started:.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    client.set_terminated(parent, "FINISHED")
    return parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--dir", default="/tmp/report-scale")
    args = parser.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / f"scale-{args.runs}.db"
    uri = f"sqlite:///{db}"
    if not db.exists():
        generate(uri, args.runs)

    from fashion_lab.record import results
    from fashion_lab.report.build import build_report

    results.runs_frame(uri, progress=None).head()  # warm: imports and the store's schema check
    started = time.perf_counter()
    frame = results.runs_frame(uri)
    read = time.perf_counter() - started
    started = time.perf_counter()
    build_report(uri, folder / "report")
    total = time.perf_counter() - started
    print(f"runs_frame: {len(frame)} runs in {read:.2f} s; build_report (read, {min(len(frame), 2000)} histories, "
          f"stats, 4 plots, md+html): {total:.2f} s")


if __name__ == "__main__":
    main()
