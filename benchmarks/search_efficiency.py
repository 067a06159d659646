"""Does a search find a better network than the tutorial's, and for how much? (issue 22, item 4)

    python benchmarks/search_efficiency.py --keep ~/search-bench    # data=small: 75 epochs per search, 3 oracle
                                                                    # seeds, bests confirmed at 25 epochs x 3 seeds
    python benchmarks/search_efficiency.py --only tpe --oracle-seeds 1 --keep DIR    # a piece of it
    python benchmarks/search_efficiency.py --smoke                  # tiny synthetic data: checks the plumbing only

1. The tutorial configuration (`fashion-lab train experiment=tutorial`) trains on the confirmation seeds; the mean
   of its best validation accuracies is the target a search's trial has to beat.
2. Each strategy searches `sweeps/search.yaml` from the tutorial (`experiment=tutorial`, warm start: its first trial
   is the tutorial's configuration clipped into the space), once per oracle seed (`tuner.seed`), one trial at a time,
   each in its own store, until its trials have trained the budget (3 tutorial runs' worth of epochs).
3. Each search's best trial (best validation accuracy within the budget) is retrained on the same confirmation
   seeds at the tutorial's epochs, and compared with the tutorial on matched seeds by the tool's own paired
   analysis (`fashion_lab.analysis.stats.paired_effect`: test accuracy, 95 % t interval).

Epochs are counted from the stores: every per-epoch `loss` a trial logged is one epoch trained, in the order the
store received them (a pruned trial's epochs count; a continued Hyperband round counts only the epochs it adds).
Epoch counts do not depend on the machine's load; seconds do. With --keep the work resumes: a finished search
(its result.json) and a finished confirmation run (found in confirm.db by its overrides) are not run again, and
an interrupted search continues from its tuner state.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hyperband_epochs import cpu_model  # a sibling script: its folder is on sys.path

REPO = Path(__file__).resolve().parent.parent
TUTORIAL = ["experiment=tutorial"]
BUDGET_RUNS = 3  # the issue's budget: 3 tutorial runs' worth of epochs (75 on data=small)
TARGET_PT = 0.5  # the target: a confirmed best at least 0.5 pt above the tutorial, interval above 0
STRATEGIES = {  # name -> the tuner overrides of that search; every one starts from the tutorial (warm start)
    "random": ["tuner=random", "tuner.max_trials=200"],
    "bayesian": ["tuner=bayesian", "tuner.max_trials=200", "tuner.num_initial_points=3"],
    "hyperband": ["tuner=hyperband", "tuner.max_epochs=9", "tuner.factor=3", "tuner.continue_rounds=true"],
    "tpe": ["tuner=tpe", "tuner.max_trials=200", "tuner.num_initial_points=3"],
    "tpe_median": ["tuner=tpe", "tuner.max_trials=200", "tuner.num_initial_points=3", "tuner.pruner=median",
                   "tuner.pruner_startup_trials=3", "tuner.pruner_warmup_epochs=1"],
}
SMOKE = ["data=synthetic", "data.synthetic_train=300", "data.synthetic_test=100", "data.val_samples=100"]
DROPPED = ("tuner", "tracking.uri=", "trainer.epochs=", "trainer.seed=", "sweep.")  # not part of a trial's network


def epoch_rows(db: Path, role: str | None = None) -> list[tuple[int, float | None, str]]:
    """(timestamp ms, val_accuracy, run id) of every epoch the store's runs (with this role tag) trained, in order."""
    store = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    only_role = ("join tags t on t.run_uuid = l.run_uuid and t.key = 'fashion_lab.role' and t.value = ? "
                 if role else "")
    try:
        rows = store.execute(
            f"select l.timestamp, v.value, l.run_uuid from metrics l {only_role}"
            "left join metrics v on v.run_uuid = l.run_uuid and v.step = l.step and v.key = 'val_accuracy' "
            "where l.key = 'loss' order by l.timestamp, l.run_uuid, l.step", (role,) if role else ()).fetchall()
    finally:
        store.close()
    return rows


def first_reaching(rows, target: float) -> int | None:
    """The 1-based count of epochs trained when a val_accuracy first reached the target (None: never)."""
    for count, row in enumerate(rows, start=1):
        if row[1] is not None and row[1] >= target:
            return count
    return None


def run_cli(arguments: list[str], folder: Path, stop=None, poll_s: float = 3.0) -> None:
    """Runs ``fashion-lab ARGS`` in ``folder``; ``stop()`` is polled and ends it early (SIGTERM)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    errors = tempfile.TemporaryFile("w+")  # a file, not a pipe: an hour of a search's stderr never blocks it
    process = subprocess.Popen([sys.executable, "-m", "fashion_lab.cli.main", *arguments], cwd=folder, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors,
                               text=True, start_new_session=True)
    try:
        while process.poll() is None:
            if stop is not None and stop():
                return end(process)
            time.sleep(poll_s)
    except BaseException:  # Ctrl-C or SIGTERM here: the command (in its own session, so not signalled) ends too
        end(process)
        raise
    if process.returncode != 0:
        errors.seek(0)
        raise RuntimeError(f"fashion-lab {' '.join(arguments)} exited {process.returncode}: {errors.read()[-2000:]}")


def end(process: subprocess.Popen) -> None:
    """SIGTERM: the command closes its runs (KILLED) and its workers; SIGKILL to its group if it hangs."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def query(db: Path, sql: str, args=()) -> list[tuple]:
    if not db.exists():
        return []
    store = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return store.execute(sql, args).fetchall()
    finally:
        store.close()


class Ledger:
    """The finished pieces (each search's result, each confirmation run's figures), saved after every piece: the
    work resumes from it, here or, with the ledger committed, on another machine whose stores are gone."""

    def __init__(self, path: Path, setup: dict):
        self.path = path
        self.data = json.loads(path.read_text()) if path.exists() else {"setup": setup, "searches": {},
                                                                         "confirmations": {}}
        if self.data["setup"] != setup:
            raise SystemExit(f"search_efficiency.py: --ledger {path} holds another set-up ({self.data['setup']}); "
                             f"this one is {setup}: name another ledger")

    def save(self) -> None:
        staged = self.path.with_name(self.path.name + ".tmp")
        staged.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
        os.replace(staged, self.path)  # a kill never leaves half a ledger


def run_seconds(db: Path, runs: list[str]) -> float:
    """Seconds the runs spent from start to their last epoch (gaps between resumed pieces not counted)."""
    marks = ",".join("?" * len(runs))
    rows = query(db, f"select r.start_time, max(m.timestamp) from runs r join metrics m on m.run_uuid = r.run_uuid "
                     f"where r.run_uuid in ({marks}) group by r.run_uuid", runs)
    return sum(end - start for start, end in rows) / 1000


def search(name: str, oracle: int, common: list[str], target: float, budget: int, folder: Path,
           trial: list[str], ledger: Ledger) -> dict:
    """One search, resumed where it stopped; its budget and first-beat epoch counted from its store."""
    if (key := f"{name}-oracle{oracle}") in ledger.data["searches"]:
        return dict(ledger.data["searches"][key])
    run_folder = folder / key
    run_folder.mkdir(parents=True, exist_ok=True)
    db = run_folder / "search.db"

    def stop() -> bool:
        try:
            rows = epoch_rows(db, "trial") if db.exists() else []
        except sqlite3.OperationalError:  # the store is being created
            return False
        return len(rows) >= budget

    run_cli(["tune", "search", *TUTORIAL, *STRATEGIES[name], f"tuner.seed={oracle}", *common, *trial,
             "tuner.parallel_trials=1", f"tracking.uri=sqlite:///{db}"], run_folder, stop)
    counted = epoch_rows(db, "trial")[:budget]  # the poll may stop it an epoch or two past the budget
    best_val, best_run = max((row[1], row[2]) for row in counted if row[1] is not None)
    (overrides,) = query(db, "select value from tags where run_uuid = ? and key = 'fashion_lab.overrides'",
                         (best_run,))[0]
    ledger.data["searches"][key] = result = {
        "strategy": name, "oracle_seed": oracle, "epochs_trained": len(counted),
        "beat_at": first_reaching(counted, target), "best_val": best_val,
        "best_overrides": [o for o in shlex.split(overrides) if not o.startswith(DROPPED)],
        "trial_s": round(run_seconds(db, sorted({row[2] for row in counted})), 1), "store": f"sqlite:///{db}"}
    ledger.save()
    return dict(result)


def confirm(arm: list[str], seeds: list[int], epochs: int, folder: Path, ledger: Ledger) -> dict[int, dict]:
    """The arm trained on each seed at the full epochs (in confirm.db), unless the ledger holds that run."""
    db = folder / "confirm.db"
    done = ledger.data["confirmations"].setdefault(" ".join(arm), {})
    for seed in seeds:
        if str(seed) in done:
            continue
        overrides = [*arm, f"trainer.epochs={epochs}", f"trainer.seed={seed}", f"tracking.uri=sqlite:///{db}"]
        run_cli(["train", *overrides], folder)
        ((run,),) = query(db, "select r.run_uuid from runs r join tags t on t.run_uuid = r.run_uuid and t.key = "
                              "'fashion_lab.overrides' where t.value = ? and r.status = 'FINISHED' "
                              "order by r.start_time desc limit 1", (" ".join(overrides),))
        ((test, val),) = query(db, "select (select value from latest_metrics where run_uuid = ?1 and key = "
                                   "'test_accuracy'), (select max(value) from metrics where run_uuid = ?1 and "
                                   "key = 'val_accuracy')", (run,))
        done[str(seed)] = {"test_accuracy": test, "best_val": val, "seconds": round(run_seconds(db, [run]), 1)}
        ledger.save()
    return {seed: done[str(seed)] for seed in seeds}


def paired(tutorial: dict[int, float], arm: dict[int, float]):
    """The arm minus the tutorial on matched seeds, by the tool's own paired analysis."""
    import pandas as pd

    from fashion_lab.analysis import stats

    frame = pd.DataFrame([{"arm": name, "seed": seed, "test_accuracy": value}
                          for name, values in (("tutorial", tutorial), ("best", arm))
                          for seed, value in values.items()])
    return stats.paired_effect(frame, "arm", "best", "tutorial", "test_accuracy", [], "seed")


def interval(effect) -> str:
    if math.isnan(effect.diff):
        return effect.reason or "no estimate"
    if not effect.has_ci:
        return f"{effect.diff * 100:+.1f} pt ({effect.reason})"
    return f"{effect.diff * 100:+.1f} pt, 95 % CI {effect.low * 100:+.1f} to {effect.high * 100:+.1f} (n={effect.n})"


SPACE_KEYS = ("model.", "optimizer", "trainer.batch_size")  # the keys sweeps/search.yaml searches


def table(results: list[dict], budget: int) -> list[str]:
    lines = ["| strategy | oracle seed | epochs to beat the tutorial's val | best val in budget | epochs trained | "
             "trial s | confirmed Δ test accuracy vs tutorial | confirm s | best configuration |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        network = " ".join(o for o in r["best_overrides"] if o.startswith(SPACE_KEYS))
        lines.append(f"| {r['strategy']} | {r['oracle_seed']} | {r['beat_at'] or f'not in {budget}'} | "
                     f"{r['best_val']:.4f} | {r['epochs_trained']} | {r['trial_s']:.0f} | {r['confirmed']} | "
                     f"{r['confirm_s']:.0f} | `{network}` |")
    return lines


def verdict(results: list[dict]) -> str:
    """Whether a confirmed best beats the tutorial by the target with an interval above 0, or by how much it missed."""
    met = [r for r in results if r["effect_diff"] >= TARGET_PT / 100 and r["effect_low"] > 0]
    if met:
        return "target met: " + "; ".join(f"{r['strategy']} (oracle {r['oracle_seed']}) {r['confirmed']}"
                                          for r in met)
    best = max(results, key=lambda r: -1 if math.isnan(r["effect_diff"]) else r["effect_diff"])
    return (f"target missed: no confirmed best is {TARGET_PT} pt or more above the tutorial with an interval above 0; "
            f"the closest is {best['strategy']} (oracle {best['oracle_seed']}): {best['confirmed']}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data=small", help="the data override every run uses")
    parser.add_argument("--only", action="append", choices=list(STRATEGIES), help="run only these strategies")
    parser.add_argument("--oracle-seeds", type=int, default=3, help="searches per strategy (tuner.seed 0..N-1)")
    parser.add_argument("--confirm-seeds", type=int, default=3, help="seeds of each confirmation (1000, 1001, ...)")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data, 2 epochs per tutorial run")
    parser.add_argument("--keep", type=Path, help="work in this folder: it keeps the stores and resumes the work")
    parser.add_argument("--ledger", type=Path, help="the finished pieces, to resume from (default: in the folder)")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every run (e.g. trainer.precision=...)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds through run_cli, which ends its command
    common = (SMOKE if args.smoke else [args.data]) + ["trainer.verbose=0", "tracking.log_plots=false", *args.overrides]
    epochs = 2 if args.smoke else 25
    budget = BUDGET_RUNS * epochs
    trial = ["trainer.epochs=1"] if args.smoke else []  # smoke: 1-epoch trials (sweeps/search.yaml: 5)
    seeds = [1000 + i for i in range(args.confirm_seeds)]
    print(f"CPU: {cpu_model()} ({os.cpu_count()} cores), load average {os.getloadavg()[0]:.1f} at start")
    print("common overrides: " + " ".join(common), flush=True)
    workspace = (contextlib.nullcontext(args.keep) if args.keep
                 else tempfile.TemporaryDirectory(prefix="search-efficiency-"))
    with workspace as name:
        folder = Path(name)
        folder.mkdir(parents=True, exist_ok=True)
        ledger = Ledger(args.ledger or folder / "ledger.json", {"common": common, "epochs": epochs, "trial": trial})
        tutorial = confirm([*TUTORIAL, *common], seeds, epochs, folder, ledger)
        target = sum(run["best_val"] for run in tutorial.values()) / len(seeds)
        accuracies = ", ".join(f"{run['test_accuracy']:.4f}" for run in tutorial.values())
        print(f"tutorial: {epochs} epochs, seeds {seeds}: test accuracy {accuracies}; target (mean best "
              f"val_accuracy) {target:.4f}; each search's budget {budget} epochs", flush=True)
        results = []
        for oracle in range(args.oracle_seeds):
            for strategy in args.only or list(STRATEGIES):
                r = search(strategy, oracle, common, target, budget, folder, trial, ledger)
                best = confirm([*TUTORIAL, *r["best_overrides"]], seeds, epochs, folder, ledger)
                effect = paired({s: run["test_accuracy"] for s, run in tutorial.items()},
                                {s: run["test_accuracy"] for s, run in best.items()})
                r.update(confirmed=interval(effect), effect_diff=effect.diff, effect_low=effect.low,
                         confirm_s=sum(run["seconds"] for run in best.values()))
                results.append(r)
                print(f"  {strategy} oracle {oracle}: beat the tutorial's val at {r['beat_at']} of "
                      f"{r['epochs_trained']} epochs; confirmed {r['confirmed']}", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} at end")
        print(f"stores in {folder}: read one with fashion-lab report tracking.uri=sqlite:///<store>")
    print("\n".join(table(results, budget)))
    print(verdict(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
