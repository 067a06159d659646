"""Smoke of the benchmark runner (tiny sizes, one repeat): keeps benchmarks/run.py from rotting.

Not a timed test: it checks that every benchmark row is printed with finite numbers, never speed.
"""

from __future__ import annotations

import math
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, cli_env

ROWS = [
    "training overhead (s/epoch, epoch 1+)", "first epoch incl. compile", "training images/s",
    "tracking: s added per epoch", "tracking: s added per run", "CLI start-up: fashion-lab --help",
    "data load: full Fashion-MNIST", "memory: tune RSS growth trial 2->2, trials in worker processes",
    "precision bf16/f32 (s/epoch, batch 32)", "precision bf16-f32 test accuracy (batch 32)",
    "trial start: call -> TF imported", "trial start: call -> first training step", "trial wall",
    "memory: train() x2 in one process",
    "arithmetic efficiency", "tf.data autotuner off/on",
]


def _cells(table: str) -> dict[str, list[str]]:
    rows = {}
    for line in table.splitlines():
        if line.startswith("| ") and not line.startswith("| benchmark"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _first_number(text: str) -> float:
    match = re.search(r"-?\d+(\.\d+)?(e[-+]?\d+)?", text)
    assert match, f"no number in {text!r}"
    return float(match.group())


@pytest.mark.slow
def test_smoke_prints_every_benchmark_row(tmp_path):
    table_file = tmp_path / "table.md"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run.py"), "--smoke", "--markdown",
                           str(table_file)], capture_output=True, text=True, timeout=600, env=cli_env(),
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert table_file.read_text() in proc.stdout  # one table, also written as markdown
    rows = _cells(proc.stdout)
    for wanted in ROWS:
        matches = [name for name in rows if (name + " ").startswith(wanted) or name.startswith(wanted.strip())]
        assert matches, f"row {wanted!r} missing from:\n{proc.stdout}"
    for name, (a, b, value, target, met) in rows.items():
        assert met in ("met", "MISSED", "info"), (name, met)
        for cell in (a, b, value):
            assert math.isfinite(_first_number(cell)), (name, cell)


def test_flop_count_matches_the_tutorial_network():
    """The analytic FLOP table agrees with the network's own parameter shapes (conv/dense MACs)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import run

    layers = dict(run.tutorial_flops())
    assert len(layers) == 6
    # conv2: 28x28 outputs x 32 filters x (3x3x32) weights, 2 FLOPs per multiply-add
    assert layers["conv2 28x28x32->32"] == 2 * 28 * 28 * 32 * 9 * 32
    assert layers["dense 3136->512"] == 2 * 3136 * 512
    assert abs(sum(layers.values()) / 1e6 - 39.8) < 0.1  # forward MFLOP per image (STACK-NOTES)


def test_first_reaching_counts_epochs_in_the_order_they_were_trained():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import search_efficiency

    rows = [(1, 0.5), (2, 0.7), (3, None), (4, 0.91), (5, 0.95)]  # (timestamp, val_accuracy) per epoch
    assert search_efficiency.first_reaching(rows, 0.9) == 4
    assert search_efficiency.first_reaching(rows, 0.96) is None


def test_a_search_benchmark_ledger_resumes_only_its_own_set_up(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import search_efficiency

    ledger = search_efficiency.Ledger(tmp_path / "ledger.json", {"common": ["data=small"], "epochs": 25})
    ledger.data["searches"]["tpe-oracle0"] = {"best_val": 0.9}
    ledger.save()
    assert search_efficiency.Ledger(tmp_path / "ledger.json", {"common": ["data=small"], "epochs": 25}).data[
        "searches"] == {"tpe-oracle0": {"best_val": 0.9}}
    with pytest.raises(SystemExit, match="holds another set-up"):  # its figures would be mixed into another's
        search_efficiency.Ledger(tmp_path / "ledger.json", {"common": ["data=fashion_mnist"], "epochs": 25})


def confirm_store(db: Path) -> dict[str, dict[int, float]]:
    """confirm.db read directly: the arm (overrides less the seed) -> {seed: test accuracy} of its finished runs."""
    store = sqlite3.connect(db)
    try:
        rows = store.execute(
            "select o.value, m.value from runs r join tags o on o.run_uuid = r.run_uuid and "
            "o.key = 'fashion_lab.overrides' join latest_metrics m on m.run_uuid = r.run_uuid and "
            "m.key = 'test_accuracy' where r.status = 'FINISHED'").fetchall()
    finally:
        store.close()
    arms: dict[str, dict[int, float]] = {}
    for overrides, accuracy in rows:
        seed = int(re.search(r"trainer\.seed=(\d+)", overrides)[1])
        arms.setdefault(re.sub(r" trainer\.seed=\d+", "", overrides), {})[seed] = accuracy
    return arms


@pytest.mark.slow
def test_search_efficiency_smoke_searches_within_the_budget_confirms_on_matched_seeds_and_resumes(tmp_path):
    kept, ledger = tmp_path / "kept", tmp_path / "ledger.json"
    command = [sys.executable, str(REPO / "benchmarks" / "search_efficiency.py"), "--smoke", "--only", "tpe_median",
               "--oracle-seeds", "1", "--confirm-seeds", "2", "--ledger", str(ledger), "--keep"]
    proc = subprocess.run([*command, str(kept)], capture_output=True, text=True, timeout=900, env=cli_env(),
                          cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tutorial = re.search(r"tutorial: (\d+) epochs, seeds \[1000, 1001\].*target \(mean best val_accuracy\) "
                         r"([\d.]+); each search's budget (\d+) epochs", proc.stdout)
    assert tutorial, proc.stdout
    epochs, target, budget = int(tutorial[1]), float(tutorial[2]), int(tutorial[3])
    assert (epochs, budget) == (2, 6) and target > 0.15  # 3 tutorial runs' worth; the data is learnable
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in proc.stdout.splitlines() if line.startswith("| "))}
    arms = confirm_store(kept / "confirm.db")
    (tutorial_arm,) = [a for a in arms if "model." not in a]  # the tutorial: experiment=tutorial, nothing searched
    assert set(arms[tutorial_arm]) == {1000, 1001}
    for strategy in ("tpe_median",):  # one strategy: the plumbing is the same for each (CI's time)
        oracle, beat, best, trained, _, confirmed, _, network = rows[strategy]
        assert oracle == "0" and int(trained) == budget  # stopped at its budget, counted from its own store
        search_epochs = sqlite3.connect(kept / f"{strategy}-oracle0" / "search.db").execute(
            "select count(*) from metrics where key = 'loss'").fetchone()[0]
        assert search_epochs >= budget
        assert beat == f"not in {budget}" if float(best) < target else 1 <= int(beat) <= budget
        # the best trial retrained on the tutorial's seeds at the tutorial's epochs, and the difference paired
        (arm,) = [a for a in arms if network.strip("`").split()[0] in a and f"trainer.epochs={epochs}" in a
                  and all(o in a for o in network.strip("`").split())]
        assert set(arms[arm]) == {1000, 1001}
        paired = sum(arms[arm][s] - arms[tutorial_arm][s] for s in (1000, 1001)) / 2
        assert re.fullmatch(re.escape(f"{paired * 100:+.1f} pt, 95 % CI ") + r"[-+][\d.]+ to [-+][\d.]+ \(n=2\)",
                            confirmed), confirmed
    assert re.search(r"^target (met|missed): ", proc.stdout, re.M)

    # another machine, its stores gone: the committed ledger alone resumes the work, and nothing is trained again
    again = subprocess.run([*command, str(tmp_path / "elsewhere")], capture_output=True, text=True, timeout=300,
                           env=cli_env(), cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr[-3000:]
    assert not list((tmp_path / "elsewhere").rglob("*.db"))
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [line for line in again.stdout.splitlines() if line.startswith("| ")] == table
