"""Search-test helpers (from test_tune): tiny synthetic settings, small search spaces, and a sqlite
store read back as plain dicts, without MLflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from helpers.kills import kill_when

TINY = ["data=synthetic", "trainer.epochs=1", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "trainer.verbose=0"]
# Trials in the search process: saves a TensorFlow start (~4 s) per trial in tests of the search's
# logic. The default (a fresh process per trial) is covered by the acceptance, kill and all-fail tests.
IN_PROCESS = "tuner.fresh_process=false"

# A small space for the resume/failure tests: seconds per trial, a group choice and a condition.
SMALL_SPACE = """# small test space
hydra:
  sweeper:
    params:
      model.bn_placement: after,none
      optimizer: sgd,adam
      optimizer.learning_rate: tag(log, interval(0.001, 0.05))
      optimizer.momentum: interval(0.5, 0.9)
sweep:
  strategy: random
  conditions:
    optimizer.momentum: optimizer=sgd
model:
  filters: [8, 16]
  dense_units: 32
"""

# A tiny net without batch norm or momentum, so a huge learning rate really diverges (NaN loss).
TINY_NET_NO_BN = """model:
  filters: [8]
  dense_units: 16
  dense_dropout: 0.0
  bn_placement: none
optimizer:
  momentum: 0.0
"""

DIVERGING_SPACE = """# every trial diverges (NaN loss)
hydra:
  sweeper:
    params:
      optimizer.learning_rate: tag(log, interval(1e100, 1e200))  # inf in float32
sweep:
  strategy: random
""" + TINY_NET_NO_BN


def runs(store: str) -> list[dict]:
    """Every run with its status and tags, read straight from the sqlite store."""
    # Read-only: connecting must not create an empty file that the CLI would then refuse as a store.
    db = sqlite3.connect(f"file:{store[len('sqlite:///'):]}?mode=ro", uri=True)
    rows = db.execute("select run_uuid, name, status from runs").fetchall()
    tags = db.execute("select run_uuid, key, value from tags").fetchall()
    params = db.execute("select run_uuid, key from params").fetchall()
    db.close()
    out = {r: {"id": r, "name": n, "status": s, "tags": {}, "params": set()} for r, n, s in rows}
    for r, k, v in tags:
        out[r]["tags"][k] = v
    for r, k in params:
        out[r]["params"].add(k)
    return list(out.values())


def children(store: str) -> list[dict]:
    return [r for r in runs(store) if r["tags"].get("fashion_lab.role") == "trial"]


def parents(store: str) -> list[dict]:
    return [r for r in runs(store) if r["tags"].get("fashion_lab.role") == "search"]


def kill_during_second_trial(args: list[str], store: str, cwd, env: dict) -> None:
    """Start ``fashion-lab *args``, and kill -9 it once trial 1 is RUNNING in the store."""
    kill_when(args, cwd, env, lambda: any(t["tags"].get("fashion_lab.trial_id") == "1" and t["status"] == "RUNNING"
                                          for t in children(store)), "the second trial")


def _store_rows(store: str, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(store[len("sqlite:///"):])
    rows = db.execute(sql, args).fetchall()
    db.close()
    return rows


def _metric_history(store: str, run_id: str, key: str) -> list[float]:
    return [v for (v,) in _store_rows(store, "select value from metrics where run_uuid=? and key=? order by step",
                                      run_id, key)]


def _search_sweeps(tmp_path) -> Path:
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "lr_search.yaml").write_text(
        "# a 1-D learning-rate search on tiny data\nsweep:\n  strategy: random\n"
        "hydra:\n  sweeper:\n    params:\n      optimizer.learning_rate: interval(0.001, 0.01)\n")  # no lr that can diverge
    return folder
