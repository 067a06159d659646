"""A single ``train`` whose loss diverges, or whose data files are corrupt, ends in one line, not a
traceback: the real command, real Keras training, a real truncated idx .gz file."""

from __future__ import annotations

import contextlib
import gzip
import sqlite3
from pathlib import Path

import pytest


def our_lines(stderr: str) -> list[str]:
    noise = (" INFO mlflow.", "WARNING: All log messages before absl", "I0000 ", "E0000 ", "W0000 ")
    return [line for line in stderr.splitlines() if line.strip() and not any(n in line for n in noise)]


def statuses(db: Path) -> list[str]:
    if not db.exists():
        return []
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return [status for (status,) in connection.execute("SELECT status FROM runs")]


@pytest.mark.slow  # trains until the loss is NaN (a few seconds, in a fresh process)
def test_a_diverging_train_ends_in_one_line_and_a_failed_run(run_cli, tmp_path):
    db = tmp_path / "m.db"
    result = run_cli("train", "data=synthetic", "data.synthetic_train=300", "trainer.epochs=3", "trainer.verbose=0",
                     "optimizer.learning_rate=1e6", f"tracking.uri=sqlite:///{db}")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output and "Invalid loss" not in output  # Keras' own line is not printed either
    [line] = our_lines(result.stderr)
    assert line.startswith("fashion-lab: error: loss became nan at epoch 1") and "recorded FAILED" in line
    assert statuses(db) == ["FAILED"]


def test_a_truncated_data_file_ends_in_one_line_before_any_run(cli_in_process, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
    for name in names:  # valid gzip files, each cut off halfway: what an interrupted copy leaves
        whole = gzip.compress(b"\0" * 100_000)
        (folder / name).write_bytes(whole[:len(whole) // 2])
    db = tmp_path / "m.db"
    result = cli_in_process("train", "data=small", f"data.dir={folder}", "trainer.epochs=1", "trainer.verbose=0",
                            f"tracking.uri=sqlite:///{db}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    [line] = our_lines(result.stderr)
    assert "not a complete gzip file" in line and str(folder) in line, line
    assert "RUNNING" not in statuses(db)
