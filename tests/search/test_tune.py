"""`fashion-lab tune`: real KerasTuner searches on synthetic data, real CLI, real sqlite MLflow store."""

from __future__ import annotations

import shutil
import shlex
import sqlite3
import sys
from pathlib import Path

import pytest

from conftest import cli_env, compose
from helpers.search import (IN_PROCESS, SMALL_SPACE, TINY, TINY_NET_NO_BN, _metric_history, _store_rows,
                            children, kill_during_second_trial, parents, runs)


# --- the space, without training -------------------------------------------------------------

def test_search_file_parses_into_the_lectures_space():
    from fashion_lab.search.space import parse_space

    cfg = compose(["sweep=search"])
    from fashion_lab.config import compose as tune_compose
    hydra_cfg = tune_compose(["sweep=search"], return_hydra_config=True)
    from omegaconf import OmegaConf
    dims = {d.key: d for d in parse_space(OmegaConf.to_container(hydra_cfg.hydra.sweeper.params),
                                          OmegaConf.to_container(cfg.sweep.conditions))}
    assert dims["model.filters"].choices == ("[16,32]", "[32,64]", "[64,128]")
    assert dims["optimizer"].choices == ("sgd", "adam", "rmsprop")
    assert dims["optimizer.learning_rate"].log and dims["optimizer.learning_rate"].kind == "float"
    assert dims["model.dense_units"].kind == "int"
    assert dims["optimizer.momentum"].parent == "optimizer" and dims["optimizer.momentum"].parent_values == ("sgd",)
    assert dims["trainer.batch_size"].choices == (32, 64, 128)


def test_sampled_values_become_overrides_hydra_composes():
    import keras_tuner as kt
    from fashion_lab.search.space import declare, parse_space, to_overrides
    from fashion_lab.config import compose as tune_compose

    dims = parse_space({"optimizer": "sgd,adam", "optimizer.momentum": "interval(0.1, 0.9)",
                        "model.filters": "[8,16],[16,32]", "model.dense_units": "int(interval(16, 64))"},
                       {"optimizer.momentum": "optimizer=sgd"})
    hp = kt.HyperParameters()
    declare(hp, dims)
    hp.values.update({"optimizer": "adam", "model.filters": "[16,32]", "model.dense_units": 40})
    overrides = to_overrides(dims, hp)
    assert overrides == ["optimizer=adam", "model.filters=[16,32]", "model.dense_units=40"]  # momentum inactive
    cfg = tune_compose(["data=synthetic", *overrides])
    assert cfg.optimizer.name.value == "adam" and list(cfg.model.filters) == [16, 32]
    assert cfg.optimizer.momentum is None  # the adam group, not SGD's momentum


def test_command_line_pins_swept_keys():
    from fashion_lab.search.space import SpaceError, parse_space, pin

    dims = parse_space({"optimizer": "sgd,adam", "optimizer.momentum": "interval(0.1, 0.9)",
                        "model.pooling": "max,avg"}, {"optimizer.momentum": "optimizer=sgd"})
    assert [d.key for d in pin(dims, {"optimizer": "adam"})] == ["model.pooling"]
    kept = pin(dims, {"optimizer": "sgd", "model.pooling": "avg"})
    assert [d.key for d in kept] == ["optimizer.momentum"] and kept[0].parent is None
    with pytest.raises(SpaceError, match="nothing to search"):
        pin(dims, {"optimizer": "sgd", "model.pooling": "avg", "optimizer.momentum": "0.5"})


@pytest.mark.parametrize("params, conditions, message", [
    ({"model.dense_units": "interval(5, 1)"}, {}, "low < high"),
    ({"optimizer.learning_rate": "tag(log, interval(0, 1))"}, {}, "log sampling needs low > 0"),
    ({"optimizer.momentum": "interval(0, 1)"}, {"optimizer.momentum": "optimizer=sgd"}, "CHOICE_KEY"),
    ({"optimizer": "sgd,adam", "optimizer.momentum": "interval(0, 1)"}, {"optimizer.momentum": "optimizer=lion"},
     "not among optimizer's choices"),
    ({}, {}, "nothing to search"),
])
def test_bad_spaces_are_refused_with_a_clear_message(params, conditions, message):
    from fashion_lab.search.space import SpaceError, parse_space

    with pytest.raises(SpaceError, match=message):
        parse_space(params, conditions)


# --- real searches ---------------------------------------------------------------------------

@pytest.mark.slow
def test_random_search_records_registers_reproduces_and_resumes(run_cli, store, tmp_path):
    # The lecture's space with the two costliest entries pinned on the command line (test speed).
    args = ["tune", *TINY, "model.filters=[8,16]", "trainer.batch_size=64", "tuner=random", "tuner.max_trials=3",
            f"tracking.uri={store}"]
    first = run_cli(*args, check=True)
    assert len(parents(store)) == 1
    trials = children(store)
    assert len(trials) == 3 and {t["status"] for t in trials} == {"FINISHED"}
    parent = parents(store)[0]
    for t in trials:
        assert {"model.bn_placement", "optimizer.learning_rate", "trainer.epochs", "model.filters"} <= t["params"]
        assert t["tags"]["mlflow.parentRunId"] == parent["id"] and t["tags"]["fashion_lab.strategy"] == "random"
        assert parent["id"][:8] in t["name"]
    assert sorted(t["tags"]["fashion_lab.trial_id"] for t in trials) == ["0", "1", "2"]
    db = sqlite3.connect(store[len("sqlite:///"):])
    versions = db.execute("select name, version, run_id from model_versions").fetchall()
    parent_metrics = dict(db.execute("select key, value from latest_metrics where run_uuid=?", (parent["id"],)))
    db.close()
    assert len(versions) == 1 and versions[0][0] == "fashion-lab-cnn"
    assert versions[0][2] in {t["id"] for t in trials}
    assert {"best_val_accuracy", "test_accuracy"} <= set(parent_metrics)
    # Trials ran in their own processes (the default): their peak RSS is on the parent's record.
    assert {"trial_rss_mb", "trial_process_peak_rss_mb"} <= set(parent_metrics)
    assert (tmp_path / "outputs" / "tuner" / "search" / "oracle.json").exists()

    line = [l for l in first.stdout.splitlines() if l.startswith("reproduce: fashion-lab train ")][-1]
    reproduce = shlex.split(line[len("reproduce: fashion-lab train "):])
    assert any(o.startswith("optimizer.learning_rate=") for o in reproduce)
    assert "model.filters=[8,16]" in reproduce and "model.bn_placement=" in " ".join(reproduce)
    run_cli("train", *reproduce, check=True)  # train accepts the printed overrides

    before = len(children(store))
    again = run_cli(*args, check=True)
    assert len(children(store)) == before  # nothing re-run, no duplicate runs
    assert len(parents(store)) == 1 and "resuming" in again.stdout
    more = run_cli(*args[:-2], "tuner.max_trials=4", f"tracking.uri={store}", check=True)
    trials = children(store)
    assert len(trials) == 4 and sorted(t["tags"]["fashion_lab.trial_id"] for t in trials) == ["0", "1", "2", "3"]
    assert len(parents(store)) == 1 and "best trial" in more.stdout



@pytest.mark.slow
def test_search_killed_during_second_trial_resumes(store, tmp_path, sweeps, run_cli):
    args = ["tune", "small", *TINY, "tuner.max_trials=3", f"tracking.uri={store}"]
    env = cli_env(FASHION_LAB_SWEEPS_DIR=str(sweeps))
    kill_during_second_trial(args, store, tmp_path, env)
    killed_id = next(t["id"] for t in children(store) if t["tags"]["fashion_lab.trial_id"] == "1")
    run_cli(*args, env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)}, check=True)
    trials = children(store)
    finished = [t for t in trials if t["status"] == "FINISHED"]
    assert sorted(t["tags"]["fashion_lab.trial_id"] for t in finished) == ["0", "1", "2"]  # none twice
    assert not [r for r in runs(store) if r["status"] == "RUNNING"]
    assert next(t for t in trials if t["id"] == killed_id)["status"] == "KILLED"
    assert len(parents(store)) == 1 and parents(store)[0]["status"] == "FINISHED"
    assert "fashion_lab.failure" not in parents(store)[0]["tags"]


@pytest.mark.slow
def test_hyperband_records_bracket_and_round(run_cli, store, sweeps):
    # tuner.fresh_process=false: trials in the search process (the other mode; also faster here).
    run_cli("tune", "small", *TINY, "tuner=hyperband", "tuner.max_epochs=2", "tuner.factor=2",
            IN_PROCESS, f"tracking.uri={store}", env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)}, check=True)
    trials = children(store)
    assert trials and all(t["status"] == "FINISHED" for t in trials)
    assert all({"fashion_lab.bracket", "fashion_lab.round"} <= set(t["tags"]) for t in trials)
    assert {t["tags"]["fashion_lab.strategy"] for t in trials} == {"hyperband"}
    assert {t["tags"]["fashion_lab.round"] for t in trials} >= {"0", "1"}  # some trial was promoted


@pytest.mark.slow
def test_grid_sweep_file_is_a_bayesian_space(run_cli, store):
    # one random trial, then the Gaussian process picks the second: the guided path runs for real
    result = run_cli("tune", "bn_placement", *TINY, "tuner=bayesian", "tuner.max_trials=2", "tuner.num_initial_points=1",
                     IN_PROCESS, "model.filters=[8,16]", "model.dense_units=32", f"tracking.uri={store}", check=True)
    trials = children(store)
    assert len(trials) == 2 and all(t["status"] == "FINISHED" for t in trials)
    assert {t["tags"]["fashion_lab.strategy"] for t in trials} == {"bayesian"}
    assert parents(store)[0]["tags"]["fashion_lab.swept_keys"] == "model.bn_placement"
    assert "reproduce: fashion-lab train sweep=bn_placement" in result.stdout


@pytest.mark.slow
def test_all_trials_failing_exits_non_zero(run_cli, store, sweeps):
    result = run_cli("tune", "diverging", *TINY, "tuner.max_trials=2", f"tracking.uri={store}",
                     env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)})
    assert result.returncode != 0
    assert "all 2 trials" in result.stderr and "failed" in result.stderr
    assert "reproduce:" not in result.stdout
    trials = children(store)
    assert len(trials) == 2 and {t["status"] for t in trials} == {"FAILED"}
    assert all("TrainingDiverged" in t["tags"]["fashion_lab.failure"] for t in trials)
    assert parents(store)[0]["status"] == "FAILED"


@pytest.mark.slow
def test_changed_space_or_strategy_is_refused(run_cli, store, sweeps):
    env = {"FASHION_LAB_SWEEPS_DIR": str(sweeps)}
    args = ["tune", "small", *TINY, "tuner.max_trials=1", IN_PROCESS, f"tracking.uri={store}"]
    run_cli(*args, env=env, check=True)
    refused = run_cli(*args, "tuner=bayesian", env=env)
    assert refused.returncode == 2 and "tuner.overwrite=true" in refused.stderr
    (sweeps / "small.yaml").write_text(SMALL_SPACE.replace("after,none", "after,before"))
    refused = run_cli(*args, env=env)
    assert refused.returncode == 2
    assert "tuner.overwrite=true" in refused.stderr and "tuner.project=" in refused.stderr
    assert len(children(store)) == 1  # nothing ran
    renamed = run_cli(*args, "tuner.project=small2", env=env, check=True)
    assert len(children(store)) == 2 and len(parents(store)) == 2 and "best trial" in renamed.stdout


def test_bad_sweep_name_or_tuner_value_fails_before_any_run(cli_in_process, store):
    result = cli_in_process("tune", "nosuch", f"tracking.uri={store}")
    assert result.returncode == 2 and "nosuch" in result.stderr and "search" in result.stderr
    result = cli_in_process("tune", "tuner.objective=accuracy", f"tracking.uri={store}")
    assert result.returncode == 2 and "val_accuracy" in result.stderr
    result = cli_in_process("tune", "tuner.fresh_process=maybe", f"tracking.uri={store}")
    assert result.returncode == 2 and "tuner.fresh_process=maybe" in result.stderr
    assert "not a valid bool" in result.stderr  # the reason, not only the override
    assert not Path(store[len("sqlite:///"):]).exists()


# --- the search's identity: space, strategy and the base overrides that change what a trial trains

@pytest.mark.slow
def test_fingerprint_without_trained_overrides_is_unchanged():
    """State files written before base overrides counted still resume: no such override, same value."""
    from fashion_lab.search import study as tune  # the search definition moved from tune.py to search.py
    from fashion_lab.search.space import fingerprint, parse_space

    dims = parse_space({"optimizer": "sgd,adam", "optimizer.learning_rate": "tag(log, interval(0.001, 0.05))"})
    assert fingerprint(dims, "random") == fingerprint(dims, "random", []) == "a534a3b93179a38c"
    settings = tune.prepare_command(["bn_placement", "tuner.max_trials=5", "tuner.seed=3", "tracking.uri=sqlite:///x.db",
                             "trainer.verbose=0", "tracking.log_plots=false"])
    plain = tune.prepare_command(["bn_placement"])
    assert settings.fingerprint == plain.fingerprint == fingerprint(plain.dims, plain.strategy)
    a = tune.prepare_command(["bn_placement", "data=synthetic", "trainer.epochs=2"])
    b = tune.prepare_command(["bn_placement", "trainer.epochs=2", "data=synthetic", "tuner.max_trials=7"])
    assert a.fingerprint == b.fingerprint != plain.fingerprint  # order and settings do not matter
    assert tune.prepare_command(["bn_placement", "data=synthetic", "trainer.epochs=3"]).fingerprint != a.fingerprint


@pytest.mark.slow  # several CLI searches (~20-30 s); still in CI
def test_changed_base_overrides_are_refused_settings_are_not(run_cli, store, sweeps):
    env = {"FASHION_LAB_SWEEPS_DIR": str(sweeps)}
    args = ["tune", "small", *TINY, IN_PROCESS, f"tracking.uri={store}"]
    run_cli(*args, "tuner.max_trials=1", env=env, check=True)
    epochs = [o if o != "trainer.epochs=1" else "trainer.epochs=2" for o in args]
    refused = run_cli(*epochs, "tuner.max_trials=1", env=env)
    assert refused.returncode == 2, refused.stderr
    assert "space, strategy or base overrides of 'small' changed" in refused.stderr
    assert "trainer.epochs=1" in refused.stderr and "trainer.epochs=2" in refused.stderr  # what changed
    assert "tuner.project=NEW_NAME" in refused.stderr and "tuner.overwrite=true" in refused.stderr
    assert len(children(store)) == 1  # nothing ran
    # A bigger budget, other tracking/verbosity settings and another order continue the same search.
    more = run_cli("tune", "small", *reversed(TINY[:-1]), "trainer.verbose=1", "tuner.max_trials=2", IN_PROCESS,
                   f"tracking.uri={store}", env=env, check=True)
    assert "resuming" in more.stdout
    assert len(parents(store)) == 1 and len(children(store)) == 2


# --- executions per trial, the val_loss objective --------------------------------------------

def _registered_run_ids(store: str) -> list[str]:
    return [r for (r,) in _store_rows(store, "select run_id from model_versions order by version")]


def _best_line(stdout: str, objective: str) -> tuple[str, float]:
    line = next(l for l in stdout.splitlines() if l.startswith("best trial "))
    trial_id, _, score = line[len("best trial "):].partition(f": {objective}=")
    return trial_id, float(score)


GRID = ["bn_placement", *TINY, IN_PROCESS, "tuner=grid", "model.filters=[8,16]", "model.dense_units=32"]


@pytest.mark.slow  # five runs of the CLI-level resume; still in CI
def test_executions_per_trial_train_each_trial_twice_and_resume_per_execution(run_cli, store, tmp_path):
    """Each trial is two runs (seeds trainer.seed and +1) whose mean is the objective; the best
    execution of the best trial is registered. A search killed between the two executions of a
    trial resumes with the finished execution as recorded and trains only the other one."""
    args = ["tune", *GRID, "tuner.executions_per_trial=2", "trainer.seed=7", f"tracking.uri={store}"]
    run_cli(*args, "tuner.max_trials=1", check=True)
    state = tmp_path / "outputs" / "tuner" / "bn_placement"
    shutil.copytree(state, tmp_path / "after_trial_0")
    result = run_cli(*args, "tuner.max_trials=2", check=True)
    trials = children(store)
    assert len(trials) == 4 and {t["status"] for t in trials} == {"FINISHED"}
    by_trial: dict[str, list[dict]] = {}
    for t in trials:
        by_trial.setdefault(t["tags"]["fashion_lab.trial_id"], []).append(t)
    assert sorted(by_trial) == ["0", "1"]
    seeds = dict(_store_rows(store, "select run_uuid, value from params where key='trainer.seed'"))
    accuracy = dict(_store_rows(store, "select run_uuid, value from latest_metrics where key='best_val_accuracy'"))
    for runs_of_trial in by_trial.values():
        assert sorted(t["tags"]["fashion_lab.execution"] for t in runs_of_trial) == ["0", "1"]
        assert sorted(seeds[t["id"]] for t in runs_of_trial) == ["7", "8"]
    best_id, score = _best_line(result.stdout, "val_accuracy")
    best_runs = by_trial[best_id]
    assert score == pytest.approx(sum(accuracy[t["id"]] for t in best_runs) / 2, abs=1e-4)  # the mean
    assert _registered_run_ids(store)[-1] == max(best_runs, key=lambda t: accuracy[t["id"]])["id"]  # this search's

    # Killed during trial 1's second execution: the tuner never saved trial 1, its run 1 is KILLED.
    shutil.rmtree(state)
    shutil.copytree(tmp_path / "after_trial_0", state)
    second = next(t for t in by_trial["1"] if t["tags"]["fashion_lab.execution"] == "1")
    db = sqlite3.connect(store[len("sqlite:///"):])
    db.execute("update runs set status='KILLED' where run_uuid=?", (second["id"],))
    db.commit()
    db.close()
    resumed = run_cli(*args, "tuner.max_trials=2", check=True)
    assert resumed.stdout.count("already recorded") == 1  # execution 0 of trial 1, not re-run
    again = [t for t in children(store) if t["tags"]["fashion_lab.trial_id"] == "1" and t["status"] == "FINISHED"]
    assert len(children(store)) == 5 and sorted(t["tags"]["fashion_lab.execution"] for t in again) == ["0", "1"]
    assert len(parents(store)) == 1 and parents(store)[0]["status"] == "FINISHED"


@pytest.mark.slow  # several CLI searches (~20-30 s); still in CI
def test_val_loss_objective_picks_the_lowest_validation_loss(run_cli, store):
    """val_loss is scored as its minimum over epochs (as best_val_accuracy is the maximum) by the
    fresh trial, the resume path (a recorded run) and the choice of the run to register."""
    from fashion_lab.record import tracking
    from fashion_lab.search import outcome
    from fashion_lab.search import study as tune

    args = [*GRID, "tuner.max_trials=3", "tuner.objective=val_loss", "trainer.epochs=2", f"tracking.uri={store}"]
    result = run_cli("tune", *args, check=True)
    trials = children(store)
    assert len(trials) == 3 and {t["status"] for t in trials} == {"FINISHED"}
    lowest = {t["id"]: min(_metric_history(store, t["id"], "val_loss")) for t in trials}
    assert all(len(_metric_history(store, t["id"], "val_loss")) == 2 for t in trials)
    best = min(trials, key=lambda t: lowest[t["id"]])
    best_id, score = _best_line(result.stdout, "val_loss")
    assert best_id == best["tags"]["fashion_lab.trial_id"] and score == pytest.approx(lowest[best["id"]], abs=1e-4)
    assert _registered_run_ids(store) == [best["id"]]
    parent = parents(store)[0]
    summary = dict(_store_rows(store, "select key, value from latest_metrics where run_uuid=?", parent["id"]))
    assert summary["best_trial_val_loss"] == pytest.approx(lowest[best["id"]], abs=1e-6)

    search = tune.prepare_command(args)  # what a resumed search would score for an already recorded run
    search.parent_run_id = parent["id"]
    for t in trials:  # the record layer hands up RunRecords
        assert outcome._run_score(search, tracking.read_run(search.cfg.tracking, t["id"])) == pytest.approx(lowest[t["id"]], abs=1e-6)
    assert outcome.best_run(search, best_id).run_id == best["id"]


FLAKY_SPACE = """# the first learning rate trains, the others diverge (NaN loss); tuner=grid tries them in this order
hydra:
  sweeper:
    params:
      optimizer.learning_rate: 0.01,1e100,1e101,1e102  # inf in float32
sweep:
  strategy: random
""" + TINY_NET_NO_BN


@pytest.mark.slow  # several CLI searches (~20-30 s); still in CI
def test_consecutive_failures_after_a_success_stop_the_search_and_report_the_best(run_cli, store, sweeps):
    """Trial 0 trains, trials 1 and 2 diverge: the search stops at tuner.max_consecutive_failed_trials=2
    (trial 3 never starts). The exit status is 1, as when every trial fails: the search was cut short,
    its budget not searched, so scripts and CI must not take it for a finished search; the trials that
    completed are still reported, their best registered and reproducible, and the parent run is
    FAILED with the reason in its summary.stopped tag."""
    (sweeps / "flaky.yaml").write_text(FLAKY_SPACE)
    result = run_cli("tune", "flaky", *TINY, "tuner=grid", IN_PROCESS, "tuner.max_trials=4",
                     "tuner.max_consecutive_failed_trials=2",
                     f"tracking.uri={store}", env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)})
    assert result.returncode == 1, result.stdout + result.stderr[-3000:]
    assert "search stopped: 2 trials failed in a row (tuner.max_consecutive_failed_trials=2)" in result.stderr
    assert "1 completed, 2 failed trials" in result.stdout and "best trial 0:" in result.stdout
    assert "reproduce: fashion-lab train sweep=flaky" in result.stdout
    trials = {t["tags"]["fashion_lab.trial_id"]: t for t in children(store)}
    assert sorted(trials) == ["0", "1", "2"]
    assert trials["0"]["status"] == "FINISHED" and _registered_run_ids(store) == [trials["0"]["id"]]
    for failed in (trials["1"], trials["2"]):
        assert failed["status"] == "FAILED" and "TrainingDiverged" in failed["tags"]["fashion_lab.failure"]
    parent = parents(store)[0]
    assert parent["status"] == "FAILED" and "failed in a row" in parent["tags"]["fashion_lab.summary.stopped"]
    assert parent["tags"]["fashion_lab.summary.best_run_id"] == trials["0"]["id"]

    # Re-running is a deliberate retry: the failed trials are not re-run (trial 2 was saved before
    # the stop), the old streak does not stop the search again, and the last grid point runs.
    again = run_cli("tune", "flaky", *TINY, "tuner=grid", IN_PROCESS, "tuner.max_trials=4",
                     "tuner.max_consecutive_failed_trials=2",
                    f"tracking.uri={store}", env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)})
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    trials = children(store)
    assert sorted(t["tags"]["fashion_lab.trial_id"] for t in trials) == ["0", "1", "2", "3"]  # none twice
    assert "1 completed, 3 failed trials" in again.stdout and "best trial 0:" in again.stdout


def test_bayesian_search_starts_with_the_random_trials_it_is_given(tmp_path):
    """tuner.num_initial_points reaches the oracle; null keeps KerasTuner's 3 x dimensions."""
    from fashion_lab.search import study as tune
    from fashion_lab.search.keras_tuner import make_oracle

    common = ["bn_placement", "tuner=bayesian", f"tuner.directory={tmp_path}"]
    given = make_oracle(tune.prepare_command(common + ["tuner.num_initial_points=2"]))
    default = make_oracle(tune.prepare_command(common + ["tuner.project=default"]))
    assert given.num_initial_points == 2 and default.num_initial_points is None  # KerasTuner: max(3 x dims, 3)


def test_the_same_search_draws_the_same_trials_with_the_default_seed(tmp_path):
    """tuner.seed=0 (the default) is a seed: KerasTuner alone reads 0 as "no seed" and draws at random."""
    from fashion_lab.search import study as tune
    from fashion_lab.search.keras_tuner import make_oracle

    def first_trials(folder, *extra):
        oracle = make_oracle(tune.prepare_command(["search", f"tuner.directory={tmp_path / folder}", *extra]))
        return [oracle.create_trial(f"tuner{i}").hyperparameters.values for i in range(3)]

    assert first_trials("a") == first_trials("b")  # two fresh searches, one command
    assert first_trials("c", "tuner.seed=7") == first_trials("d", "tuner.seed=7")
    assert first_trials("e", "tuner.seed=7") != first_trials("f")


@pytest.mark.slow
def test_summary_compares_with_chance_and_the_base_and_flags_a_weak_model(run_cli, store):
    """A real grid search of 3 tiny trials (after = the base configuration is one of them): each trial says
    where the search stands, the summary compares the best with chance and the base, and a best run below
    tuner.register_min_accuracy is registered only with a warning tag."""
    result = run_cli("tune", *GRID, "tuner.max_trials=3", "tuner.register_min_accuracy=0.99",
                     f"tracking.uri={store}", timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert {"trial 1 of 3", "trial 2 of 3", "trial 3 of 3"} <= set(lines)
    against = next(l for l in lines if l.startswith("against chance and the base: "))
    assert "chance is 0.10 (10 classes): the best is " in against and " pt above it" in against
    assert "the base configuration (trial " in against and " pt from the best (single runs)" in against
    assert "(tagged fashion_lab.warning: below tuner.register_min_accuracy=0.99)" in result.stdout
    assert "fashion-lab: warning: registering fashion-lab-cnn tagged fashion_lab.warning" in result.stderr
    from mlflow import MlflowClient

    (version,) = MlflowClient(tracking_uri=store).search_model_versions("name='fashion-lab-cnn'")
    assert "below tuner.register_min_accuracy=0.99 (chance 0.10)" in version.tags["fashion_lab.warning"]


def test_every_strategy_has_a_backend_and_a_tuner_config():
    from fashion_lab.config import CONF_DIR, STRATEGIES
    from fashion_lab.search.backend import BACKENDS

    assert set(BACKENDS) == set(STRATEGIES) == {p.stem for p in (CONF_DIR / "tuner").glob("*.yaml")}


def test_a_backend_asks_is_told_and_reopens_with_its_trials(tmp_path):
    """The seam, on KerasTuner for real (no training): trials asked, one scored and one failed, the
    state saved; a new backend on the same folder sees both, and the best is the scored one."""
    from fashion_lab.search import study as tune
    from fashion_lab.search.backend import best, open_backend

    search = tune.prepare_command(["search", "tuner=random", "tuner.max_trials=3", f"tuner.directory={tmp_path}"])
    backend = open_backend(search)
    asked = backend.ask(2)
    assert [t.status for t in asked] == ["RUNNING", "RUNNING"] and all(t.values for t in asked)
    assert all(k in {d.key for d in search.dims} for t in asked for k in t.values)  # the space's own keys
    backend.tell(asked[0].trial_id, score=0.8)
    backend.tell(asked[1].trial_id, failure="ValueError: constructed")
    reopened = {t.trial_id: t for t in open_backend(search).trials()}
    assert (reopened[asked[0].trial_id].status, reopened[asked[0].trial_id].score) == ("COMPLETED", 0.8)
    assert reopened[asked[1].trial_id].status == "FAILED"
    assert best(list(reopened.values()), backend.direction).trial_id == asked[0].trial_id


def test_the_best_of_equal_scores_is_the_earliest_trial():
    from fashion_lab.search.backend import Trial, best

    trials = [Trial("10", {}, "COMPLETED", 0.9), Trial("2", {}, "COMPLETED", 0.9), Trial("3", {}, "FAILED"),
              Trial("4", {}, "COMPLETED", 0.5)]
    assert best(trials, "max").trial_id == "2" and best(trials, "min").trial_id == "4"
    assert best([Trial("1", {}, "FAILED")], "max") is None
