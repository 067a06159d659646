"""Smoke of the benchmark runner (tiny sizes, one repeat): keeps benchmarks/run.py from rotting.

Not a timed test: it checks that every benchmark row is printed with finite numbers, never speed.
"""

from __future__ import annotations

import math
import re
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


@pytest.mark.slow
def test_search_efficiency_smoke_stops_each_search_at_its_budget_or_the_target(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "search_efficiency.py"), "--smoke",
                           "--only", "random", "--only", "hyperband", "--keep", str(tmp_path / "kept")],
                          capture_output=True, text=True,
                          timeout=900, env=cli_env(), cwd=tmp_path, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    tutorial = re.search(r"tutorial: (\d+) epochs, best val_accuracy ([\d.]+).*capped at (\d+)", proc.stdout)
    assert tutorial, proc.stdout
    epochs, target, cap = int(tutorial[1]), float(tutorial[2]), int(tutorial[3])
    assert epochs == 3 and cap == 3 and target > 0.3  # the synthetic data is learnable: well above chance (0.1)
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in proc.stdout.splitlines() if line.startswith("| "))}
    for strategy in ("random", "hyperband"):
        reached, share, seconds, best, trained, met = rows[strategy]
        assert 1 <= int(trained) <= cap
        if reached == "not reached":
            assert float(best) < target and met == "missed" and seconds == "—"
        else:  # stopped at the epoch that reached the target
            assert int(reached) == int(trained) and float(best) >= target and float(seconds) > 0
        kept = re.search(rf"^  {strategy}: sqlite:///(\S+)$", proc.stdout, re.M)
        assert kept and Path(kept[1]).is_file(), proc.stdout  # --keep: each search's store stays to be read
