"""Epochs a Hyperband search trains with and without continuing promoted rounds (issue 15, item 3).

    python benchmarks/hyperband_epochs.py                       # max_epochs 9, factor 3, data=synthetic
    python benchmarks/hyperband_epochs.py data=small model.filters=[16,32]   # extra overrides for both

Runs the same `fashion-lab tune tuner=hyperband` twice, each in its own temporary folder and
store: with `tuner.continue_rounds=true` (a promoted round continues its earlier round's weights)
and `=false` (every round trains from scratch). The epochs are counted from each store: per trial
run, the per-epoch `loss` values it logged. Epoch counts depend only on the schedule (not on the
machine's load); wall times do, and are for one search each, run one after the other.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEARCH = ["tune", "tuner=hyperband", "tuner.max_epochs=9", "tuner.factor=3", "data=synthetic", "trainer.verbose=0"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def count_epochs(db: Path) -> dict[str, int]:
    """Trial runs, epochs trained (per-epoch loss values), epochs reached and continued rounds, from the store."""
    store = sqlite3.connect(db)
    try:
        trials = [r for (r,) in store.execute(
            "select run_uuid from tags where key='fashion_lab.role' and value='trial'")]
        marks = ",".join("?" * len(trials))
        trained = store.execute(f"select count(*) from metrics where key='loss' and run_uuid in ({marks})",
                                trials).fetchone()[0]
        reached = store.execute(f"select sum(value) from latest_metrics where key='epochs_completed' "
                                f"and run_uuid in ({marks})", trials).fetchone()[0]
        continued = store.execute(f"select count(*) from tags where key='fashion_lab.continues' "
                                  f"and run_uuid in ({marks})", trials).fetchone()[0]
        finished = store.execute(f"select count(*) from runs where status='FINISHED' and run_uuid in ({marks})",
                                 trials).fetchone()[0]
    finally:
        store.close()
    return {"trials": len(trials), "finished": finished, "epochs_trained": trained,
            "epochs_reached": int(reached or 0), "continued_rounds": continued}


def run_search(continue_rounds: bool, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="hyperband-epochs-") as folder:
        db = Path(folder) / "m.db"
        command = [sys.executable, "-m", "fashion_lab.cli.main", *SEARCH, *overrides,
                   f"tuner.continue_rounds={str(continue_rounds).lower()}", f"tracking.uri=sqlite:///{db}"]
        started = time.perf_counter()
        subprocess.run(command, cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
        return {**count_epochs(db), "wall_s": time.perf_counter() - started}


def main(overrides: list[str]) -> int:
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.1f} at start")
    print("command: fashion-lab " + " ".join(SEARCH + overrides) + " tuner.continue_rounds=true|false")
    results = {flag: run_search(flag, overrides) for flag in (True, False)}
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    print("| continue_rounds | trials (finished) | continued rounds | epochs trained | epochs reached | wall s |")
    print("|---|---|---|---|---|---|")
    for flag, r in results.items():
        print(f"| {str(flag).lower()} | {r['trials']} ({r['finished']}) | {r['continued_rounds']} | "
              f"{r['epochs_trained']} | {r['epochs_reached']} | {r['wall_s']:.0f} |")
    on, off = results[True], results[False]
    print(f"epochs trained with/without continuation: {on['epochs_trained']}/{off['epochs_trained']} = "
          f"{on['epochs_trained'] / off['epochs_trained']:.3f} ({off['epochs_trained'] - on['epochs_trained']} "
          f"epochs saved); wall time {on['wall_s']:.0f}/{off['wall_s']:.0f} s = {on['wall_s'] / off['wall_s']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
