"""``tuner.seed_from_store=true`` (search/seeding.py): finished runs in the store whose configuration lies in
the space are a new search's completed trials, not trained again; runs of another base are not. Real
``train`` and ``tune`` commands (the installed CLI) on one sqlite store, on both backends."""

from __future__ import annotations

import re
import sqlite3

import pytest

SEED_SPACE = """# a space the store's earlier runs fall into
hydra:
  sweeper:
    params:
      optimizer.learning_rate: 0.01,0.02,0.03,0.04
sweep:
  strategy: random
"""
TINY = ["data=synthetic", "trainer.epochs=1", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=32"]


def finished(store: str) -> list[dict]:
    """FINISHED runs (not parents): id, parent id, learning rate, read straight from the sqlite store."""
    db = sqlite3.connect(f"file:{store[len('sqlite:///'):]}?mode=ro", uri=True)
    rows = db.execute(
        "select r.run_uuid, (select value from tags where run_uuid = r.run_uuid and key = 'mlflow.parentRunId'), "
        "(select value from params where run_uuid = r.run_uuid and key = 'optimizer.learning_rate'), "
        "(select value from params where run_uuid = r.run_uuid and key = 'data.synthetic_train') "
        "from runs r where r.status = 'FINISHED' and not exists (select 1 from tags where run_uuid = r.run_uuid "
        "and key = 'fashion_lab.role' and value = 'search')").fetchall()
    db.close()
    return [{"id": i, "parent": p, "lr": float(lr), "train": int(n)} for i, p, lr, n in rows]


def seeded(stdout: str) -> tuple[int, list[str]]:
    """The search's report of its seeds: how many trials, from which runs."""
    found = re.search(r"seeded (\d+) trials from finished runs in the store \(runs ([^)]*)\)", stdout)
    assert found, stdout[-2000:]
    return int(found.group(1)), [] if found.group(2) == "none" else found.group(2).split()


@pytest.mark.slow  # two tiny runs, then two searches that train 3 more (2-12 min on 2 shared cores)
def test_finished_runs_in_the_space_are_seeded_trials_and_not_trained_again(run_cli, store, tmp_path):
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "seedable.yaml").write_text(SEED_SPACE)
    env = {"FASHION_LAB_SWEEPS_DIR": str(sweeps)}
    run_cli("train", *TINY, "optimizer.learning_rate=0.02", f"tracking.uri={store}", check=True)  # in the space
    run_cli("train", *TINY, "optimizer.learning_rate=0.03", "data.synthetic_train=200",  # another base: not seeded
            f"tracking.uri={store}", check=True)
    (in_space,) = [r["id"] for r in finished(store) if r["train"] == 300]

    first = run_cli("tune", "seedable", *TINY, "tuner=tpe", "tuner.max_trials=3", "tuner.seed_from_store=true",
                    "tuner.fresh_process=false", f"tracking.uri={store}", env=env, check=True)
    assert seeded(first.stdout) == (1, [in_space])
    trials = [r for r in finished(store) if r["parent"]]
    assert len(trials) == 2  # 3 trials: the seeded one is not trained
    assert "3 completed, 0 failed trials" in first.stdout

    # A KerasTuner search seeded by every run of this base so far: the plain runs and the first search's trials.
    base_configs = {r["lr"] for r in finished(store) if r["train"] == 300}
    second = run_cli("tune", "seedable", *TINY, "tuner=random", "tuner.project=again", "tuner.max_trials=4",
                     "tuner.seed_from_store=true", "tuner.fresh_process=false", f"tracking.uri={store}", env=env, check=True)
    count, runs = seeded(second.stdout)
    assert count == len(base_configs) and len(runs) == 3  # one trial per configuration, its runs grouped
    new = [r for r in finished(store) if r["parent"] and r["id"] not in {t["id"] for t in trials}]
    assert len(new) == 4 - count  # only the trials the seeds leave of the budget are trained
    assert {r["lr"] for r in new}.isdisjoint(base_configs)  # KerasTuner draws no seeded point again
    assert "4 completed, 0 failed trials" in second.stdout


def test_seed_from_store_is_refused_where_a_strategy_has_no_place_for_it(cli_in_process, store):
    result = cli_in_process("tune", "tuner=hyperband", "tuner.seed_from_store=true", f"tracking.uri={store}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "tuner.seed_from_store=true is not allowed with tuner.strategy=hyperband: one of random, bayesian, tpe, "
        "cmaes (or tuner.seed_from_store=false)")
