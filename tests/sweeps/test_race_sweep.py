"""A real raced grid on synthetic data (issue 21 item 2): a learning rate that cannot train is stopped at the
first rung, the other arm continues from its recorded weights, and the answer is honest about both."""

from __future__ import annotations

import pytest

from helpers.sweeps import runs_in

RACE = """# race: Adam at a working rate against one that cannot move the weights
hydra:
  sweeper:
    params:
      optimizer.learning_rate: 0.003,0.0000001
sweep:
  seeds: 3
  rungs: [1]
"""
# Small enough for CI, decisive at epoch 1: no batch norm (its running statistics make epoch-1 validation
# a warm-up measure), no dense dropout.
SMALL = ["optimizer=adam", "data=synthetic", "trainer.epochs=2", "trainer.verbose=0", "data.synthetic_train=1500",
         "data.synthetic_test=200", "data.val_samples=300", "model.filters=[8,16]", "model.dense_units=32",
         "model.bn_placement=none", "model.dense_dropout=0"]
TAG = "fashion_lab."


@pytest.mark.slow
def test_a_raced_grid_stops_the_worse_arm_and_continues_the_other(run_cli, store, tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "race.yaml").write_text(RACE)
    result = run_cli("sweep", "race", "sweep.race=true", *SMALL, f"tracking.uri={store}", timeout=900, check=True,
                     env={"FASHION_LAB_SWEEPS_DIR": str(tmp_path / "sweeps")})
    parents, children = runs_in(store)
    assert len(parents) == 1
    lr = {c.info.run_id: float(c.data.params["optimizer.learning_rate"]) for c in children}
    first = [c for c in children if c.data.tags.get(TAG + "race.rung") == "1"]
    last = [c for c in children if c.data.tags.get(TAG + "race.rung") == "2"]
    assert len(first) == 6 and len(last) == 3 and len(children) == 9  # the stopped arm never trains epoch 2
    for run in first:
        stopped = TAG + "race.stopped_at_rung" in run.data.tags
        assert stopped == (lr[run.info.run_id] == 1e-7)
        if stopped:
            assert run.data.tags[TAG + "race.stopped_at_epoch"] == "1"
            assert float(run.data.tags[TAG + "race.bound"]) < 0 and "matched seeds" in run.data.tags[TAG + "race.evidence"]
    by_id = {c.info.run_id: c for c in children}
    for run in last:  # continued from its own seed's rung-1 run, from epoch 1 on
        earlier = by_id[run.data.tags[TAG + "continues"]]
        assert lr[run.info.run_id] == 0.003 and earlier.data.tags[TAG + "race.rung"] == "1"
        assert earlier.data.params["trainer.seed"] == run.data.params["trainer.seed"]
        assert run.data.metrics["initial_epoch"] == 1 and run.data.metrics["epochs_completed"] == 2
        assert run.data.metrics["epochs_trained"] == 1
    out = result.stdout
    answer = out[out.index("Answer:"):]
    assert "learning rate 1e-07 (vs 0.003) changed" not in answer and "Budget: 3 finished runs, 1 cells" in answer
    assert "stopped: learning_rate=1e-07 at rung 1 (epoch 1): " in answer and "no full-budget effect" in answer
    assert "epochs trained: 9 of the full grid's 12 (75%)" in answer
    # the report: the same stopped arm and epochs, no effect for it, every run still in runs.csv
    run_cli("report", f"tracking.uri={store}", f"report.out={tmp_path / 'rep'}", check=True)
    report = (tmp_path / "rep" / "report.md").read_text()
    racing = report[report.index("## Racing"):]
    assert "- stopped: learning_rate=1e-07 at rung 1 (epoch 1): " in racing and "(75%)" in racing
    assert "1e-07 (vs 0.003) changed" not in report
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "rep" / "runs.csv")) == 9
