"""Hyperband rounds continue: a promoted round starts from its previous round's recorded weights
(job.round_start finds them through the record layer; train() continues them)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import compose

# Tiny and quick to learn: one epoch of Adam moves the loss well below a fresh start's.
QUICK = ["data=synthetic", "data.synthetic_train=800", "data.synthetic_test=100", "data.val_samples=100",
         "model.filters=[8,16]", "model.dense_units=32", "model.dense_dropout=0.0", "optimizer=adam",
         "optimizer.learning_rate=0.003", "trainer.batch_size=16", "trainer.verbose=0", "tracking.log_plots=false"]

SPACE = """# a Hyperband test space: small networks that learn the synthetic data in a few epochs
hydra:
  sweeper:
    params:
      model.bn_placement: after,none
      optimizer.learning_rate: tag(log, interval(0.002, 0.005))
sweep:
  strategy: hyperband
"""


def _rows(store: str, sql: str, *args) -> list[tuple]:
    db = sqlite3.connect(store[len("sqlite:///"):])
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def _losses(store: str, run_id: str) -> dict[int, float]:
    """The run's per-epoch training loss by step."""
    return dict(_rows(store, "select step, value from metrics where run_uuid=? and key='loss'", run_id))


def _tags(store: str, run_id: str) -> dict[str, str]:
    return dict(_rows(store, "select key, value from tags where run_uuid=?", run_id))


def _metric(store: str, run_id: str, key: str) -> float:
    return _rows(store, "select value from latest_metrics where run_uuid=? and key=?", run_id, key)[0][0]


# --- where a round starts, read from a record (no training) ---------------------------------

@pytest.fixture
def recorded_rounds(store, tmp_path):
    """A parent with trial 0000 (execution 0, with weights, 2 epochs) and trial 0001 (no weights)."""
    from fashion_lab.record import tracking

    cfg = compose(["data=synthetic", "trainer.epochs=6", f"tracking.uri={store}"])
    parent = tracking.open_parent_run(cfg.tracking, name="hb", role="search", strategy="hyperband",
                                      sweep_name="hb", swept_keys=[], definition="# test\n")
    client = tracking.client_for(cfg.tracking)
    experiment = client.get_run(parent).info.experiment_id
    runs = {}
    for trial_id, weights in (("0000", True), ("0001", False)):
        tags = {**tracking.child_tags(parent, "hb", "trial", "hyperband"),
                tracking.TAG + "trial_id": trial_id, tracking.TAG + "execution": "0"}
        run_id = client.create_run(experiment, tags=tags).info.run_id
        tracking.log_metrics(client, run_id, {"epochs_completed": 2})
        if weights:
            files = tmp_path / "files"
            files.mkdir()
            (files / tracking.WEIGHTS_FILE).write_bytes(b"weights")
            client.log_artifacts(run_id, str(files))
        client.set_terminated(run_id, "FINISHED")
        runs[trial_id] = run_id
    return cfg, parent, runs


def test_a_promoted_round_continues_the_recorded_run_of_its_earlier_trial(recorded_rounds, tmp_path):
    from fashion_lab.sweeps.job import round_start

    cfg, parent, runs = recorded_rounds
    start, tags = round_start(cfg, parent, {"trial_id": "0002", "continues_trial": "0000", "execution": "0"}, tmp_path)
    assert tags == {} and start.run_id == runs["0000"] and start.initial_epoch == 2
    assert Path(start.weights).read_bytes() == b"weights"  # downloaded from the record, not a local file
    assert round_start(cfg, parent, {"trial_id": "0000", "execution": "0"}, tmp_path) == (None, {})  # a first round


@pytest.mark.parametrize("trial, setting, reason", [
    ({"continues_trial": "0001", "execution": "0"}, [], "has no model.weights.h5 (it ran with tracking.log_weights=false)"),
    ({"continues_trial": "0000", "execution": "1"}, [], "no FINISHED run of trial 0000 (execution 1)"),
    ({"continues_trial": "0000", "execution": "0"}, ["trainer.epochs=2"], "already trained 2 epochs"),
    ({"continues_trial": "0000", "execution": "0"}, ["tuner.continue_rounds=false"], "tuner.continue_rounds=false"),
])
def test_a_round_that_cannot_continue_trains_from_scratch_and_says_why(recorded_rounds, tmp_path, capsys,
                                                                         trial, setting, reason):
    from fashion_lab.sweeps.job import round_start

    cfg, parent, _ = recorded_rounds
    cfg = compose(["data=synthetic", "trainer.epochs=6", f"tracking.uri={cfg.tracking.uri}", *setting])
    start, tags = round_start(cfg, parent, {"trial_id": "0002", **trial}, tmp_path)
    assert start is None and reason in tags["fashion_lab.from_scratch"]
    printed = capsys.readouterr().err
    if "continue_rounds" not in reason:  # switched off on purpose: nothing to say
        assert printed.count("\n") == 1 and "trial 0002 trains from scratch: " in printed and reason in printed


def test_continue_rounds_is_a_bool(run_cli, store):
    result = run_cli("tune", "tuner=hyperband", "tuner.continue_rounds=maybe", f"tracking.uri={store}")
    assert result.returncode == 2 and "tuner.continue_rounds=maybe" in result.stderr
    assert not Path(store[len("sqlite:///"):]).exists()


# --- train() continues a run --------------------------------------------------------------------

def test_train_continues_a_runs_weights_and_numbers_its_epochs_on(store, tmp_path):
    from fashion_lab.record import tracking
    from fashion_lab.run.train import WarmStart, train

    fresh = train(compose([*QUICK, "trainer.epochs=2", f"tracking.uri={store}"]))
    cfg = compose([*QUICK, "trainer.epochs=4", f"tracking.uri={store}"])
    weights = tracking.download_weights(cfg.tracking, fresh.run_id, tmp_path)
    continued = train(cfg, start=WarmStart(weights, 2, fresh.run_id))

    assert _tags(store, continued.run_id)["fashion_lab.continues"] == fresh.run_id
    losses = _losses(store, continued.run_id)
    assert sorted(losses) == [2, 3]  # steps go on from where the earlier run stopped
    m = continued.metrics
    assert (m["epochs_completed"], m["epochs_trained"], m["initial_epoch"]) == (4, 2, 2)
    assert m["best_epoch"] == int(continued.history["val_accuracy"].idxmax()) + 1 in (3, 4)  # absolute, from 1
    assert list(continued.history.index) == [2, 3]
    fresh_first = _losses(store, fresh.run_id)[0]
    assert losses[2] < 0.8 * fresh_first, (losses, fresh_first)  # started from trained weights
    assert fresh.metrics["initial_epoch"] == 0 and fresh.metrics["epochs_trained"] == 2


# --- a real Hyperband search --------------------------------------------------------------------

def _search(run_cli, store, tmp_path, *extra):
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir(exist_ok=True)
    (sweeps / "hb.yaml").write_text(SPACE)
    run_cli("tune", "hb", *[o for o in QUICK if not o.startswith("optimizer.learning_rate")],
            "tuner=hyperband", "tuner.max_epochs=3", "tuner.factor=3", "tuner.fresh_process=false",
            f"tracking.uri={store}", *extra, env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)}, check=True)
    rows = _rows(store, "select r.run_uuid from runs r join tags t on r.run_uuid=t.run_uuid "
                        "where t.key='fashion_lab.role' and t.value='trial'")
    return [run_id for (run_id,) in rows]


@pytest.mark.slow  # a whole Hyperband search, 6 trials (~40 s on 2 cores)
def test_hyperband_rounds_continue_the_runs_of_their_earlier_rounds(run_cli, store, tmp_path):
    trials = _search(run_cli, store, tmp_path)
    tags = {run_id: _tags(store, run_id) for run_id in trials}
    promoted = [r for r in trials if "fashion_lab.continues_trial" in tags[r]]
    assert promoted, "no trial was promoted"
    parent = tags[trials[0]]["mlflow.parentRunId"]
    for run_id in promoted:
        earlier = tags[run_id]["fashion_lab.continues"]
        assert earlier in trials and tags[earlier]["mlflow.parentRunId"] == parent  # a run of this search
        assert tags[earlier]["fashion_lab.trial_id"] == tags[run_id]["fashion_lab.continues_trial"]
        stopped = int(_metric(store, earlier, "epochs_completed"))
        losses, fresh = _losses(store, run_id), _losses(store, earlier)
        assert min(losses) == stopped  # epochs numbered on from where the earlier run stopped
        assert _metric(store, run_id, "epochs_completed") == int(tags[run_id]["fashion_lab.hyperband_epochs"])
        # The same trial trained fresh is the earlier round's first epoch (same config and seed).
        assert losses[stopped] < 0.8 * fresh[0], (losses, fresh)
    assert not [r for r in trials if r not in promoted and "fashion_lab.continues" in tags[r]]
    trained = sum(_metric(store, r, "epochs_trained") for r in trials)
    assert trained == sum(_metric(store, r, "epochs_completed") - _metric(store, r, "initial_epoch") for r in trials)
    assert trained < sum(_metric(store, r, "epochs_completed") for r in trials)  # epochs saved


@pytest.mark.slow  # two runs and a reproduce in a fresh process (~40 s on 2 cores)
def test_reproduce_continues_the_same_weights_and_matches(store, tmp_path, run_cli):
    from fashion_lab.record import tracking
    from fashion_lab.run.train import WarmStart, train

    exact = [*QUICK, "trainer.deterministic=true", f"tracking.uri={store}"]
    fresh = train(compose([*exact, "trainer.epochs=1"]))
    cfg = compose([*exact, "trainer.epochs=2"])
    continued = train(cfg, start=WarmStart(tracking.download_weights(cfg.tracking, fresh.run_id, tmp_path), 1,
                                           fresh.run_id))
    result = run_cli("reproduce", continued.run_id, f"tracking.uri={store}", timeout=240)
    assert result.returncode == 0 and "metrics match" in result.stdout, result.stdout + result.stderr[-2000:]
    assert f"continuing run {fresh.run_id}'s weights from epoch 1" in result.stdout
    (new,) = _rows(store, "select run_uuid from tags where key='fashion_lab.reproduces' and value=?", continued.run_id)
    assert _tags(store, new[0])["fashion_lab.continues"] == fresh.run_id
