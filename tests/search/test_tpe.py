"""`tuner=tpe`: Optuna's TPE as the second search backend, on real tiny searches through the CLI."""

from __future__ import annotations

import pytest

from conftest import cli_env
from helpers.search import IN_PROCESS, TINY, children, kill_during_second_trial, parents, runs

TPE = ["tuner=tpe", "tuner.num_initial_points=1"]  # TPE guides from the second trial: its own path runs


def trial_ids(store: str, status: str = "FINISHED") -> list[str]:
    return sorted(t["tags"]["fashion_lab.trial_id"] for t in children(store) if t["status"] == status)


def test_tpe_maps_the_space_to_optuna_distributions_and_reopens(tmp_path):
    """The lecture's space on Optuna (no training): categorical, log float and int entries, the momentum
    only under sgd; told trials and the journal survive a reopen, and the budget counts every trial."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from fashion_lab.search import study as tune
    from fashion_lab.search.backend import best, open_backend

    search = tune.prepare_command(["search", *TPE, "tuner.max_trials=5", f"tuner.directory={tmp_path}"])
    backend = open_backend(search)
    asked = backend.ask(3)
    assert [t.trial_id for t in asked] == ["0", "1", "2"] and asked[0].values == search.start[0]
    for trial in asked:
        assert ("optimizer.momentum" in trial.values) == (trial.values["optimizer"] == "sgd")
    kinds = backend.study.trials[1].distributions
    assert isinstance(kinds["optimizer"], CategoricalDistribution) and isinstance(kinds["model.dense_units"], IntDistribution)
    assert isinstance(kinds["optimizer.learning_rate"], FloatDistribution) and kinds["optimizer.learning_rate"].log
    backend.tell("0", score=0.8)
    backend.tell("1", failure="ValueError: constructed")
    assert (tmp_path / "search" / "optuna.journal").exists()
    reopened = open_backend(search)
    held = {t.trial_id: t for t in reopened.trials()}
    assert (held["0"].status, held["0"].score, held["1"].status, held["2"].status) == ("COMPLETED", 0.8, "FAILED", "RUNNING")
    assert best(list(held.values()), reopened.direction).trial_id == "0"
    again = reopened.ask(5)  # trial 2 was never told: asked again first, under its number; then the budget
    assert [t.trial_id for t in again] == ["2", "3", "4"] and again[0].values == asked[2].values


def test_a_missing_backend_library_is_refused_in_one_line(monkeypatch):
    from fashion_lab.search import backend

    monkeypatch.setitem(backend.REQUIRES, "tpe", ("no_such_library_here", "fashion-lab[optuna]"))
    assert backend.unavailable("tpe") == ("tuner.strategy=tpe needs no_such_library_here, which is not installed: "
                                          "pip install 'fashion-lab[optuna]'")
    assert backend.unavailable("random") is None


@pytest.mark.slow  # five tiny trials over three commands (~40 s); still in CI
def test_tpe_search_records_resumes_extends_and_refuses_another_strategy(run_cli, store, sweeps, tmp_path):
    env = {"FASHION_LAB_SWEEPS_DIR": str(sweeps)}
    args = ["tune", "small", *TINY, *TPE, IN_PROCESS, f"tracking.uri={store}"]
    first = run_cli(*args, "tuner.max_trials=3", env=env, check=True)
    assert trial_ids(store) == ["0", "1", "2"] and len(parents(store)) == 1
    assert {t["tags"]["fashion_lab.strategy"] for t in children(store)} == {"tpe"}
    assert parents(store)[0]["tags"]["fashion_lab.strategy"] == "tpe" and "best trial" in first.stdout
    assert (tmp_path / "outputs" / "tuner" / "small" / "optuna.journal").exists()
    assert "the base configuration (trial 0)" in first.stdout  # warm start: trial 0 is the base

    again = run_cli(*args, "tuner.max_trials=3", env=env, check=True)
    assert "resuming" in again.stdout and len(children(store)) == 3  # nothing re-run
    more = run_cli(*args, "tuner.max_trials=5", env=env, check=True)
    assert trial_ids(store) == ["0", "1", "2", "3", "4"] and len(children(store)) == 5  # only the new trials
    assert len(parents(store)) == 1 and "5 completed, 0 failed trials" in more.stdout

    refused = run_cli(*args[:-len(TPE) - 2], "tuner=random", IN_PROCESS, f"tracking.uri={store}", env=env)
    assert refused.returncode == 2 and "(it was tpe" in refused.stderr and "tuner.overwrite=true" in refused.stderr
    assert len(children(store)) == 5


@pytest.mark.slow
def test_tpe_search_killed_during_second_trial_resumes_without_duplicates(store, tmp_path, sweeps, run_cli):
    """kill -9 while trial 1 trains (each trial in its own process, the default): the same command asks
    trial 1 again under its number, and the search ends with trials 0-2 each finished once."""
    args = ["tune", "small", *TINY, *TPE, "tuner.max_trials=3", f"tracking.uri={store}"]
    kill_during_second_trial(args, store, tmp_path, cli_env(FASHION_LAB_SWEEPS_DIR=str(sweeps)))
    killed_id = next(t["id"] for t in children(store) if t["tags"]["fashion_lab.trial_id"] == "1")
    run_cli(*args, env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)}, check=True)
    assert trial_ids(store) == ["0", "1", "2"]  # none twice, none skipped
    assert next(t for t in children(store) if t["id"] == killed_id)["status"] == "KILLED"
    assert not [r for r in runs(store) if r["status"] == "RUNNING"]
    assert len(parents(store)) == 1 and parents(store)[0]["status"] == "FINISHED"


@pytest.mark.slow  # two diverging trials (~20-60 s on a loaded machine); still in CI
def test_tpe_consecutive_failures_stop_the_search(run_cli, store, sweeps):
    """Every trial diverges (NaN loss, seconds each): Optuna is told each failure, and the search stops
    at tuner.max_consecutive_failed_trials with the exit status of a failed search."""
    result = run_cli("tune", "diverging", *TINY, *TPE, IN_PROCESS, "tuner.max_trials=4",
                     "tuner.max_consecutive_failed_trials=2", f"tracking.uri={store}",
                     env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "search stopped: 2 trials failed in a row (tuner.max_consecutive_failed_trials=2)" in result.stderr
    assert trial_ids(store, "FAILED") == ["0", "1"] and len(children(store)) == 2
    assert parents(store)[0]["status"] == "FAILED"


@pytest.mark.slow  # two tiny trials (~30-60 s on a loaded machine); still in CI
def test_cmaes_search_records_its_trials_like_tpe(run_cli, store, sweeps):
    """tuner=cmaes: Optuna's CMA-ES on a real tiny search (the choices drawn by its independent sampler),
    each trial an MLflow child run under one search parent, as tpe records them."""
    result = run_cli("tune", "small", *TINY, "tuner=cmaes", "tuner.num_initial_points=1", IN_PROCESS,
                     "tuner.max_trials=2", f"tracking.uri={store}", env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)}, check=True)
    assert trial_ids(store) == ["0", "1"] and len(parents(store)) == 1
    assert {t["tags"]["fashion_lab.strategy"] for t in children(store)} == {"cmaes"}
    assert "2 completed, 0 failed trials" in result.stdout and "the base configuration (trial 0)" in result.stdout


def test_cmaes_refuses_a_space_of_choices_only(run_cli, store):
    result = run_cli("tune", "bn_placement", "tuner=cmaes", f"tracking.uri={store}")
    assert result.returncode == 2 and "tuner=cmaes needs at least one interval" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
