"""Epochs and wall time a search needs to reach the tutorial configuration's validation accuracy (issue 15, item 4).

    python benchmarks/search_efficiency.py                       # data=small, each search capped at 25 epochs
    python benchmarks/search_efficiency.py --budget 0.6          # cap each search at 60 % of the tutorial's epochs
    python benchmarks/search_efficiency.py --smoke               # tiny synthetic data: checks the plumbing only

First trains the tutorial configuration (`fashion-lab train experiment=tutorial`), whose best validation
accuracy is the target. Then runs each search (`fashion-lab tune` over `sweeps/search.yaml`, one trial at a
time) in its own temporary store, and stops it once a trial reaches the target or once it has trained the
budget (a fraction of the tutorial's epochs). Epochs are counted from the store: every per-epoch `loss` a
trial run logged is one epoch trained, in the order the store received them, so a continued Hyperband round
counts only the epochs it adds. Epoch counts depend on the search, not on the machine's load; wall times do.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hyperband_epochs import cpu_model  # a sibling script: its folder is on sys.path

REPO = Path(__file__).resolve().parent.parent
TARGET_SHARE = 0.40  # the target: reach the tutorial's accuracy in <= 40 % of its epochs
STRATEGIES = {  # name -> the tuner overrides of that search (hyperband: promoted rounds continue their weights)
    "random": ["tuner=random", "tuner.max_trials=100"],
    "bayesian": ["tuner=bayesian", "tuner.max_trials=100"],
    "hyperband": ["tuner=hyperband", "tuner.max_epochs=9", "tuner.factor=3", "tuner.continue_rounds=true"],
    "hyperband_from_scratch": ["tuner=hyperband", "tuner.max_epochs=9", "tuner.factor=3", "tuner.continue_rounds=false"],
}
SMOKE = ["data=synthetic", "data.synthetic_test=100", "data.val_samples=100"]


def epoch_rows(db: Path, role: str | None = None) -> list[tuple[int, float | None]]:
    """(timestamp ms, val_accuracy) of every epoch the store's runs (with this role tag) trained, in order."""
    store = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    only_role = ("join tags t on t.run_uuid = l.run_uuid and t.key = 'fashion_lab.role' and t.value = ? "
                 if role else "")
    try:
        rows = store.execute(
            f"select l.timestamp, v.value from metrics l {only_role}"
            "left join metrics v on v.run_uuid = l.run_uuid and v.step = l.step and v.key = 'val_accuracy' "
            "where l.key = 'loss' order by l.timestamp, l.run_uuid, l.step", (role,) if role else ()).fetchall()
    finally:
        store.close()
    return rows


def first_reaching(rows, target: float) -> int | None:
    """The 1-based count of epochs trained when a val_accuracy first reached the target (None: never)."""
    for count, (_, accuracy) in enumerate(rows, start=1):
        if accuracy is not None and accuracy >= target:
            return count
    return None


def run_cli(arguments: list[str], folder: Path, stop=None, poll_s: float = 3.0) -> float:
    """Runs ``fashion-lab ARGS`` in ``folder``; ``stop()`` is polled and ends it early (SIGTERM). Wall seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "fashion_lab.cli.main", *arguments], cwd=folder, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    while process.poll() is None:
        if stop is not None and stop():
            process.send_signal(signal.SIGTERM)  # the search closes its runs (KILLED) and its workers
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
            break
        time.sleep(poll_s)
    else:
        if process.returncode != 0:
            raise RuntimeError(f"fashion-lab {' '.join(arguments)} exited {process.returncode}: "
                               f"{process.stderr.read()[-2000:]}")
    process.wait()
    return time.perf_counter() - started


def tutorial_target(common: list[str], folder: Path) -> dict:
    db = folder / "tutorial.db"
    wall = run_cli(["train", "experiment=tutorial", *common, f"tracking.uri=sqlite:///{db}"], folder)
    rows = epoch_rows(db)
    accuracies = [a for _, a in rows]
    best = max(accuracies)
    return {"epochs": len(rows), "target": best, "best_epoch": accuracies.index(best) + 1,
            "final": accuracies[-1], "wall_s": wall}


def search(name: str, common: list[str], target: float, budget: int, folder: Path) -> dict:
    run_folder = Path(tempfile.mkdtemp(prefix=name + "-", dir=folder))  # its own store and tuner state
    db = run_folder / "search.db"
    state = {"rows": []}

    def stop() -> bool:
        if not db.exists():
            return False
        try:
            state["rows"] = epoch_rows(db, "trial")
        except sqlite3.OperationalError:  # the store is being created
            return False
        return first_reaching(state["rows"], target) is not None or len(state["rows"]) >= budget

    started_ms = time.time() * 1000
    wall = run_cli(["tune", "search", *STRATEGIES[name], *common, "tuner.parallel_trials=1",
                    f"tracking.uri=sqlite:///{db}"], run_folder, stop)
    rows = epoch_rows(db, "trial")
    reached = first_reaching(rows[:budget], target)  # the poll may stop it an epoch or two past the cap
    counted = rows[:reached] if reached else rows[:budget]
    best = max((a for _, a in counted if a is not None), default=float("nan"))
    seconds = (counted[-1][0] - started_ms) / 1000 if reached else None
    return {"reached_at": reached, "epochs_trained": len(counted), "best": best, "seconds_to_target": seconds,
            "wall_s": wall, "store": f"sqlite:///{db}"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data=small", help="the data override both sides use")
    parser.add_argument("--budget", type=float, default=1.0, help="each search's cap, a share of the tutorial's epochs")
    parser.add_argument("--only", action="append", choices=list(STRATEGIES), help="run only these strategies")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data and 3 tutorial epochs")
    parser.add_argument("--target", type=float, help="skip the tutorial run: its best val_accuracy, measured before")
    parser.add_argument("--tutorial-epochs", type=int, default=25, help="with --target: the epochs it trained")
    parser.add_argument("--keep", type=Path, help="keep the stores in this folder, to read which configurations won")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run (e.g. trainer.precision=...)")
    args = parser.parse_args(argv)
    common = (SMOKE if args.smoke else [args.data]) + ["trainer.verbose=0", "tracking.log_plots=false", *args.overrides]
    tutorial_extra = ["trainer.epochs=3"] if args.smoke else []
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.1f} at start")
    print("common overrides: " + " ".join(common))
    workspace = (contextlib.nullcontext(args.keep) if args.keep
                 else tempfile.TemporaryDirectory(prefix="search-efficiency-"))
    with workspace as name:
        folder = Path(name)
        folder.mkdir(parents=True, exist_ok=True)
        tutorial = (tutorial_target(common + tutorial_extra, folder) if args.target is None else
                    {"epochs": args.tutorial_epochs, "target": args.target, "best_epoch": "?", "final": math.nan,
                     "wall_s": math.nan})
        budget = max(1, round(args.budget * tutorial["epochs"]))
        print(f"tutorial: {tutorial['epochs']} epochs, best val_accuracy {tutorial['target']:.4f} at epoch "
              f"{tutorial['best_epoch']} (final {tutorial['final']:.4f}), {tutorial['wall_s']:.0f} s; target "
              f"{TARGET_SHARE:.0%} = {TARGET_SHARE * tutorial['epochs']:.0f} epochs; each search capped at {budget}",
              flush=True)
        results = {}
        for strategy in args.only or list(STRATEGIES):
            results[strategy] = search(strategy, common, tutorial["target"], budget, folder)
            print(f"  {strategy}: {results[strategy]}", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    if args.keep:
        print(f"stores kept in {args.keep}; read one with: fashion-lab report tracking.uri=<store below>")
        for strategy, r in results.items():
            print(f"  {strategy}: {r['store']}")
    print("| strategy | epochs to target | share of tutorial epochs | s to target | best val_accuracy "
          "in the epochs trained | epochs trained | target ≤ 40 % |")
    print("|---|---|---|---|---|---|---|")
    for strategy, r in results.items():
        reached = r["reached_at"]
        share = f"{reached / tutorial['epochs']:.0%}" if reached else f"> {r['epochs_trained'] / tutorial['epochs']:.0%}"
        seconds = f"{r['seconds_to_target']:.0f}" if reached else "—"
        met = "met" if reached and reached <= TARGET_SHARE * tutorial["epochs"] else "missed"
        print(f"| {strategy} | {reached or 'not reached'} | {share} | {seconds} | {r['best']:.4f} | "
              f"{r['epochs_trained']} | {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
