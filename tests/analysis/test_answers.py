"""Answers end to end: seeds as a sweep dimension, the quickstart's final answer, a ground-truth grid,
and a report with nothing finished. Real CLI, real Keras training on synthetic data, real sqlite stores."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from helpers.sweeps import TINY, runs_in


@pytest.mark.slow
def test_quickstart_ends_with_the_answer_and_its_budget(run_cli, store):
    """The shipped quickstart, shrunk by overrides: 2 learning rates x 3 seeds (sweep.seeds in the file; its
    until_sure cap held at 3 here, so the run count is fixed)."""
    result = run_cli("sweep", "quickstart", *TINY, "sweep.max_seeds=3", f"tracking.uri={store}", timeout=600)
    assert result.returncode == 0, result.stderr
    parents, children = runs_in(store)
    assert len(parents) == 1 and len(children) == 6
    assert sorted(int(c.data.params["trainer.seed"]) for c in children) == [0, 0, 1, 1, 2, 2]
    out = result.stdout[result.stdout.index("Answer:"):]
    assert "Budget: 6 finished runs, 2 cells, 3 seed(s) per cell, 1 epoch(s), 240 training images, " \
           "100 test images." in out
    assert "learning rate 0.0001 (vs 0.01)" in out and "95 % CI" in out and "3 matched pairs" in out
    assert "smallest difference this design could detect" in out and "seeds per level to detect" in out
    assert "Caveat: 1 epochs is short of convergence" in out
    assert "best point:" not in result.stdout  # the top single run is never crowned without its caveat
    assert "ranks single runs" in out and f"fashion-lab report report.sweep={parents[0].info.run_id}" in out
    # the MLflow UI link opens the sweep's own runs-table view: swept params and key metrics as columns
    pid = parents[0].info.run_id
    assert f"runs?viewStateShareKey={pid}" in out
    from mlflow import MlflowClient

    experiment = MlflowClient(tracking_uri=store).get_experiment(parents[0].info.experiment_id)
    view = json.loads(experiment.tags[f"mlflow.sharedViewState.{pid}"])
    assert view["selectedColumns"][:2] == ["params.`optimizer.learning_rate`", "params.`trainer.seed`"]
    assert "metrics.`test_accuracy`" in view["selectedColumns"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_sweep_seeds_is_checked_before_anything_runs(cli_in_process, store):
    result = cli_in_process("sweep", "quickstart", *TINY, "sweep.seeds=0", f"tracking.uri={store}")
    assert result.returncode == 2 and "sweep.seeds=0" in result.stderr and "integer >= 1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    both = cli_in_process("sweep", "quickstart", *TINY, "trainer.seed=3,4", f"tracking.uri={store}")
    assert both.returncode == 2 and "give one of them" in both.stderr
    bare = cli_in_process("train", "-m", *TINY, "optimizer=sgd,adam", "sweep.seeds=2", f"tracking.uri={store}")
    assert bare.returncode == 2 and "is applied by `fashion-lab sweep" in bare.stderr
    for key in ("race", "until_sure"):  # a plain grid would ignore them: refused, never silently a grid
        plain = cli_in_process("train", "-m", *TINY, "optimizer=sgd,adam", f"sweep.{key}=true", f"tracking.uri={store}")
        assert plain.returncode == 2 and f"sweep.{key}=true needs its sweeper" in plain.stderr, plain.stderr
        assert f"hydra/sweeper={key}" in plain.stderr and len(plain.stderr.strip().splitlines()) == 1
    search = cli_in_process("sweep", "search", *TINY, "sweep.seeds=2", f"tracking.uri={store}")
    assert search.returncode == 2 and "tuner.executions_per_trial" in search.stderr
    assert runs_in(store) == ([], [])


def test_report_with_nothing_finished_says_so_in_one_line(run_cli, store, tmp_path):
    from conftest import compose
    from fashion_lab.record import tracking

    cfg = compose([f"tracking.uri={store}"])
    client = tracking.client_for(cfg.tracking)
    exp = tracking.ensure_experiment(client, cfg.tracking)
    pid = tracking.open_parent_run(cfg.tracking, name="dead", role="sweep", strategy="grid", sweep_name="dead",
                                   swept_keys=["model.bn_placement"], definition="")
    run = client.create_run(exp, run_name="p0", tags=tracking.child_tags(pid, "dead", "point", "grid"))
    client.set_terminated(run.info.run_id, "FAILED")
    client.set_terminated(pid, "FAILED")
    result = run_cli("report", f"tracking.uri={store}", f"report.out={tmp_path / 'rep'}", timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "fashion-lab: error: dead: no finished run to report on yet (1 FAILED); finish or resume it first"]
    assert not (tmp_path / "rep").exists()


GROUND_TRUTH = """# ground truth: a learning rate that barely trains vs the tutorial's; a decay too small to matter
hydra:
  sweeper:
    params:
      optimizer.learning_rate: 0.01,0.00001
      optimizer.decay: 0,0.00001
sweep:
  seeds: 3
"""


@pytest.mark.slow
def test_ground_truth_grid_finds_the_real_effect_and_not_the_null_one(run_cli, store, tmp_path):
    """2 x 2 x 3 seeds: the learning rate's large effect is detected; the negligible decay is not, and its
    interval stays narrow although the learning rate moves accuracy by tens of points."""
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "truth.yaml").write_text(GROUND_TRUTH)
    env = {"FASHION_LAB_SWEEPS_DIR": str(tmp_path / "sweeps")}
    run_cli("sweep", "truth", "data=synthetic", "trainer.epochs=2", "trainer.verbose=0",
            "trainer.deterministic=true", f"tracking.uri={store}", env=env, timeout=900, check=True)
    run_cli("report", f"tracking.uri={store}", f"report.out={tmp_path / 'rep'}", env=env, timeout=300, check=True)
    effects = pd.read_csv(tmp_path / "rep" / "effects.csv")
    assert list(effects.columns) == ["factor", "level", "reference", "metric", "diff", "ci_low", "ci_high", "n",
                                     "verdict"]
    assert len(effects) == 4 and set(effects["metric"]) == {"test_accuracy", "best_val_accuracy"}
    assert effects[["diff", "ci_low", "ci_high"]].abs().le(1).all().all()
    test = effects[effects["metric"] == "test_accuracy"].set_index("factor")
    lr, decay = test.loc["optimizer.learning_rate"], test.loc["optimizer.decay"]
    assert float(lr["reference"]) == 0.01 and lr["verdict"] == "detected" and lr["ci_high"] < -0.2
    assert decay["verdict"] == "undetected" and decay["ci_low"] <= 0 <= decay["ci_high"] and decay["n"] == 6
    runs = pd.read_csv(tmp_path / "rep" / "runs.csv")
    from fashion_lab.analysis.stats import welch_difference

    pooled = welch_difference(runs[runs["optimizer.decay"] > 0]["test_accuracy"],
                              runs[runs["optimizer.decay"] == 0]["test_accuracy"])
    width = decay["ci_high"] - decay["ci_low"]
    assert width < 0.1 and width * 4 < pooled.high - pooled.low, (width, pooled)
    assert not math.isnan(lr["diff"])


UNTIL_SURE = """# until_sure: a rate that barely trains (decided at once) and one next to the tutorial's (undecided)
hydra:
  sweeper:
    params:
      optimizer.learning_rate: 0.01,0.00001,0.0099
sweep:
  seeds: 3
  max_seeds: 4
"""


@pytest.mark.slow
def test_until_sure_adds_seeds_only_to_undecided_comparisons(run_cli, store, tmp_path):
    (tmp_path / "sweeps").mkdir()
    (tmp_path / "sweeps" / "sure.yaml").write_text(UNTIL_SURE)
    env = {"FASHION_LAB_SWEEPS_DIR": str(tmp_path / "sweeps")}
    result = run_cli("sweep", "sure", "sweep.until_sure=true", "data=synthetic", "trainer.epochs=2",
                     "trainer.verbose=0", "trainer.deterministic=true", f"tracking.uri={store}", env=env,
                     timeout=900, check=True)
    parents, children = runs_in(store)
    assert len(parents) == 1  # one sweep, however many rounds
    seeds: dict[float, list[int]] = {}
    for child in children:
        seeds.setdefault(float(child.data.params["optimizer.learning_rate"]), []).append(
            int(child.data.params["trainer.seed"]))
    assert sorted(seeds[0.00001]) == [0, 1, 2]  # decided after the first round: no more seeds
    assert sorted(seeds[0.01]) == sorted(seeds[0.0099]) and sorted(seeds[0.01]) in ([0, 1, 2], [0, 1, 2, 3])
    said = result.stdout + result.stderr  # Hydra's log goes to stdout
    assert ("every comparison with the reference excludes 0" in said) or (
        "ran sweep.max_seeds=4 seeds: stopping" in said and len(seeds[0.01]) == 4)
    names = [c.info.run_name for c in children]
    assert len(set(names)) == len(names)  # the seed is part of every child's name
    assert f"sweep sure: {len(children)} of {len(children)} points finished" in result.stdout


@pytest.mark.slow
def test_the_answer_says_what_else_changes_the_next_step_and_progress(run_cli, store):
    """A real tiny grid: SGD vs Adam over 2 seeds. The answer names the keys the optimizer group also changes,
    ends with the next step and its cost; each point says where the sweep stands; no TensorFlow noise."""
    result = run_cli("train", "-m", *TINY, "optimizer=sgd,adam", "trainer.seed=0,1", f"tracking.uri={store}",
                     timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "point 1 of 4" in lines  # numbered from 1; nothing finished yet, so no estimate
    assert any(line.startswith("point 4 of 4, about ") and line.endswith(" left") for line in lines)
    out = result.stdout[result.stdout.index("Answer:"):]
    assert "optimizer adam (vs sgd) also changes optimizer.learning_rate (0.001 vs 0.01), optimizer.momentum" in out
    step = next(line for line in out.splitlines() if line.strip().startswith("Next:"))
    assert " here (" in step and " s per run in this sweep)" in step or "fully trained" in step
    assert "fashion-lab train -m" in step and "optimizer=sgd,adam" in step and "trainer.seed" not in step
    for noise in ("cuInit", "oneDNN", "absl::InitializeLog", "cuda drivers", "retracing"):
        assert noise not in result.stderr and noise not in result.stdout, noise


@pytest.mark.slow
def test_tensorflow_start_up_lines_only_when_asked(run_cli, store):
    """A real tiny train: stderr holds none of TensorFlow's start-up lines unless trainer.verbose=debug."""
    quiet = run_cli("train", *TINY, "tracking=none", timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if "cuda" in line.lower() or "onednn" in line.lower()
                or line.startswith(("I0000", "E0000", "W0000", "WARNING: All log messages before absl"))], quiet.stderr
    loud = run_cli("train", *[o for o in TINY if o != "trainer.verbose=0"], "trainer.verbose=debug", "tracking=none",
                   timeout=300)
    assert loud.returncode == 0, loud.stderr
    assert "oneDNN" in loud.stderr or "cuda" in loud.stderr.lower(), loud.stderr[-2000:]
    assert "val_accuracy:" in loud.stdout  # debug trains with Keras' one line per epoch
