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
    assert out.count("1/2 stopped") == 3 and out.count("2/2") == 3  # the table names each run's rung
    # the report: the same stopped arm and epochs, no effect for it, every run still in runs.csv
    run_cli("report", f"tracking.uri={store}", f"report.out={tmp_path / 'rep'}", check=True)
    report = (tmp_path / "rep" / "report.md").read_text()
    racing = report[report.index("## Racing"):]
    assert "- stopped: learning_rate=1e-07 at rung 1 (epoch 1): " in racing and "(75%)" in racing
    assert "1e-07 (vs 0.003) changed" not in report
    import pandas as pd

    assert len(pd.read_csv(tmp_path / "rep" / "runs.csv")) == 9


@pytest.mark.slow
def test_a_raced_grid_killed_in_its_second_rung_resumes_without_retraining(run_cli, store, tmp_path):
    from conftest import cli_env
    from helpers.kills import kill_when

    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "race.yaml").write_text(RACE)
    args = ["sweep", "race", "sweep.race=true", *SMALL, f"tracking.uri={store}"]
    env = {"FASHION_LAB_SWEEPS_DIR": str(tmp_path / "sweeps")}
    # kill -9 once the surviving arm's first continued run (rung 2) is training
    kill_when(args, tmp_path, cli_env(**env), lambda: any(
        c.info.status == "RUNNING" and c.data.tags.get(TAG + "continues") for c in runs_in(store)[1]),
        "the race's second rung", timeout=600)
    _, before = runs_in(store)
    first = {c.info.run_id for c in before if c.data.tags.get(TAG + "race.rung") == "1"}
    assert len(first) == 6  # rung 1 finished before the kill
    run_cli(*args, env=env, timeout=900, check=True)
    parents, children = runs_in(store)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    finished = [c for c in children if c.info.status == "FINISHED"]
    rung1 = [c for c in finished if c.data.tags.get(TAG + "race.rung") == "1"]
    rung2 = [c for c in finished if c.data.tags.get(TAG + "race.rung") == "2"]
    assert {c.info.run_id for c in rung1} == first  # rung 1 was not retrained
    assert len(rung2) == 3 and len({c.data.params["trainer.seed"] for c in rung2}) == 3  # no seed twice
    assert all(c.data.tags[TAG + "continues"] in first for c in rung2)  # each from its rung-1 weights
    assert not [c for c in children if c.info.status == "RUNNING"]


def test_the_end_of_sweep_table_names_each_raced_runs_rung():
    from fashion_lab.sweeps.summary import format_table, summary_table

    def child(lr, rung, acc, stopped=False):
        tags = {"race.rung": str(rung), "race.rungs": "2", **({"race.stopped_at_rung": "1"} if stopped else {})}
        return {"overrides": [f"optimizer.learning_rate={lr}", "trainer.seed=0"], "tags": tags, "status": "FINISHED",
                "metrics": {"best_val_accuracy": acc, "epochs_completed": rung}}

    table = summary_table([child(0.003, 1, 0.7), child(1e-7, 1, 0.1, stopped=True), child(0.003, 2, 0.8)],
                          ["optimizer.learning_rate"])
    assert list(table["rung"]) == ["2/2", "1/2", "1/2 stopped"]  # best first
    assert "1/2 stopped" in format_table(table)
    plain = summary_table([{"overrides": ["optimizer.learning_rate=0.1"], "metrics": {}, "status": "FINISHED"}],
                          ["optimizer.learning_rate"])
    assert "rung" not in plain  # a grid that did not race has no rung column
