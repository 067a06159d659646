"""``fashion-lab sweep NAME sweep.plan=true``: trains nothing, creates no run; its time and what it can detect
come from constructed stores with a known spread, or from timed steps (checked against a real sweep)."""

from __future__ import annotations

import math
import re
import socket
import time

import pytest

from conftest import compose
from fashion_lab.analysis import stats

SWEEP = """# plan test: two learning rates
hydra:
  sweeper:
    params:
      optimizer.learning_rate: 0.01,0.001
"""
RESIDUALS = [0.004, -0.004, 0.008, -0.008, 0.0]      # SS = 0.00016 over 4 df: SD = sqrt(0.00004) = 0.632 pt
SPREAD = math.sqrt(sum(r * r for r in RESIDUALS) / 4)


@pytest.fixture
def sweeps(tmp_path):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "tinyplan.yaml").write_text(SWEEP)
    return {"FASHION_LAB_SWEEPS_DIR": str(folder)}


def _runs(store: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=store)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


def _known_store(store: str) -> None:
    """5 seeds x 2 learning rates, finished, with this host's shape: 8 s to train 2 epochs x 800 images
    (5 ms per image-epoch), 10 s per run (2 s besides training), and matched differences of known spread."""
    from fashion_lab.config import run_params
    from fashion_lab.record import tracking

    cfg = compose(["data=synthetic", "trainer.epochs=2", f"tracking.uri={store}"])
    client = tracking.client_for(cfg.tracking)
    exp = tracking.ensure_experiment(client, cfg.tracking)
    params = {k: str(v) for k, v in run_params(cfg).items()}
    start = int(time.time() * 1000)
    for seed, residual in enumerate(RESIDUALS):
        for config, acc in (("lr-a", 0.70 + 0.05 * seed), ("lr-b", 0.72 + 0.05 * seed + residual)):
            run = client.create_run(exp, start_time=start, run_name=f"{config} {seed}", tags={
                "fashion_lab.sweep_id": "earlier", "fashion_lab.config_id": config, "fashion_lab.seed": str(seed),
                "fashion_lab.role": "point", "fashion_lab.host": socket.gethostname()})
            tracking.log_params(client, run.info.run_id, params)
            tracking.log_metrics(client, run.info.run_id, {
                "test_accuracy": acc, "train_seconds": 8.0, "epochs_trained": 2, "epochs_completed": 2,
                "train_images": 800})
            client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 10_000)


def test_plan_from_a_constructed_store_states_time_and_detectable_difference(run_cli, store, sweeps):
    _known_store(store)
    before = {r.info.run_id for r in _runs(store)}
    result = run_cli("sweep", "tinyplan", "data=synthetic", "trainer.epochs=2", "sweep.seeds=3",
                     "sweep.plan=true", f"tracking.uri={store}", env=sweeps, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    print(out)
    assert {r.info.run_id for r in _runs(store)} == before  # no run, no parent
    assert "Runs: 6 (2 cell(s) x 3 seed(s))" in out and "Epochs: 2 per run, 12 in all" in out
    assert "800 training, 200 validation, 300 test per run; 9,600 training image-epochs" in out
    # 6 runs x (2 s + 2 epochs x 800 images x 5 ms) = 60 s, plus the stated 15 s start
    assert "Expected wall time: about 75 s (75 s)" in out and "10 finished run(s) of the same shape" in out
    assert f"spread: {SPREAD * 100:.2f} pt SD of matched differences" in out and "at the planned 2 epoch(s)" in out
    mdd = stats.detectable_difference(SPREAD, 3)
    assert f"optimizer.learning_rate: 3 matched pairs -> \u00b1{mdd * 100:.1f} pt" in out
    seeds = max(2, stats.pairs_needed(SPREAD, 0.005))
    assert re.search(rf"Seeds per level for \u00b10.5 pt: optimizer.learning_rate: about {seeds} \(anywhere", out)


def test_plan_with_until_sure_gives_the_least_and_the_most(run_cli, store, sweeps):
    _known_store(store)
    result = run_cli("sweep", "tinyplan", "data=synthetic", "trainer.epochs=2", "sweep.until_sure=true",
                     "sweep.seeds=3", "sweep.max_seeds=5", "sweep.plan=true", f"tracking.uri={store}",
                     env=sweeps, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Runs: 6 to 10 (2 cell(s) x 3 to 5 seed(s)" in result.stdout
    assert "about 75 s (75 s) to about 2 min (115 s)" in result.stdout
    assert f"(at 5 seeds: \u00b1{stats.detectable_difference(SPREAD, 5) * 100:.1f} pt)" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["sweep.plan=maybe"], "sweep.plan=maybe: give true or false"),
    (["sweep.plan=true", "trainer.epoks=2"], "trainer.epoks"),
    (["sweep.plan=true", "trainer.epochs=0"], "trainer.epochs"),
])
def test_bad_input_to_a_plan_is_one_line_and_exit_2(cli_in_process, store, sweeps, tmp_path, args, message):
    result = cli_in_process("sweep", "tinyplan", "data=synthetic", *args, f"tracking.uri={store}", env=sweeps, timeout=120)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.db").exists()


@pytest.mark.slow  # a real 4-run sweep after its plan (~80 s on 2 cores); still in CI
def test_plan_then_the_real_sweep_predicted_over_measured(run_cli, store, sweeps, tmp_path):
    """An empty store: the spread is unknown (with its pilot) and the time comes from timed steps; the same
    sweep then runs for real, and the prediction is within a broad band of its wall time."""
    args = ["sweep", "tinyplan", "data=synthetic", "trainer.epochs=1", "sweep.seeds=2", "trainer.verbose=0",
            f"tracking.uri={store}"]
    plan = run_cli(*args, "sweep.plan=true", env=sweeps, timeout=300)
    assert plan.returncode == 0, plan.stderr
    assert not (tmp_path / "m.db").exists()  # the plan created no store, so no run
    assert ": timed: 1280 images of this network" in plan.stdout and "unknown: the store holds no comparable" in plan.stdout
    assert "A pilot measures it: fashion-lab sweep tinyplan optimizer.learning_rate=0.01,0.001" in plan.stdout
    predicted = float(re.search(r"Expected wall time: .*?\((\d+) s\)", plan.stdout).group(1))
    started = time.perf_counter()
    run_cli(*args, env=sweeps, timeout=600, check=True)
    measured = time.perf_counter() - started
    ratio = predicted / measured
    print(f"plan predicted {predicted:.0f} s, measured {measured:.0f} s: ratio {ratio:.2f}")
    assert 0.2 < ratio < 5, (predicted, measured, plan.stdout)
    assert len([r for r in _runs(store) if r.data.tags.get("fashion_lab.role") == "point"]) == 4


def test_a_plan_for_a_search_is_refused_in_one_line(cli_in_process, store, tmp_path):
    result = cli_in_process("sweep", "search", "sweep.plan=true", f"tracking.uri={store}", timeout=120)
    assert result.returncode == 2 and "sweep.plan=true plans grids" in result.stderr, result.stderr
    assert not (tmp_path / "m.db").exists()


def test_plan_of_a_raced_grid_gives_the_least_and_the_most_epochs_and_the_rule(run_cli, store, sweeps):
    _known_store(store)  # 5 s per epoch of either arm (10 s per 2-epoch run), 15 s start
    result = run_cli("sweep", "tinyplan", "data=synthetic", "trainer.epochs=2", "sweep.seeds=3", "sweep.race=true",
                     "sweep.rungs=[1]", "sweep.plan=true", f"tracking.uri={store}", env=sweeps, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # 2 arms x 3 seeds: the most is the full grid's 12 epochs; the least, both arms to epoch 1 (6) and one
    # arm's 3 seeds on to epoch 2 (3) = 9, i.e. 75 %.
    assert "rungs at epoch 1, 2; 9 to 12 epochs in all" in out and "75 % to 100 % of the full grid" in out
    # least: 15 + 3 x (1 x (5 + 5) + 5 x 1 + 2) = 66 s; most: 15 + 3 x (10 + 10) + 2 x 2 x 3 = 87 s
    assert "(66 to 87 s)" in out
    assert "at level 0.0500, alpha 0.05 split over 1 comparison(s) x 1 rung(s)" in out
    plain = run_cli("sweep", "tinyplan", "data=synthetic", "trainer.epochs=2", "sweep.seeds=3", "sweep.plan=true",
                    f"tracking.uri={store}", env=sweeps, timeout=120)
    assert plain.returncode == 0 and "Racing" not in plain.stdout


def test_race_epochs_least_and_most():
    from fashion_lab.sweeps.race_plan import race_epochs

    # the ablation: 6 arms x 3 seeds, rungs 3, 9, 25
    assert race_epochs(6, 3, [3, 9, 25]) == (6 * 3 * 3 + 3 * 22, 6 * 3 * 25)
    assert race_epochs(1, 5, [10]) == (50, 50)  # one rung: nothing can stop
