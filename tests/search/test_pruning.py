"""`tuner.pruner`: Optuna stops a trial's epochs on its intermediate values; the run is FINISHED, tagged pruned."""

from __future__ import annotations

import pytest

from helpers.search import TINY, _metric_history, children

# Trial 0 is the base (SGD at 0.01, it learns); trial 1, the listed start point, barely moves (1e-7):
# with one completed trial before pruning and no warm-up, the median pruner stops it after its first epoch.
PRUNE_SPACE = """# a trial forced worse than the base
hydra:
  sweeper:
    params:
      optimizer.learning_rate: tag(log, interval(1e-7, 0.05))
sweep:
  strategy: tpe
  initial_points:
    - {optimizer.learning_rate: 1e-7}
model:
  filters: [8, 16]
  dense_units: 32
"""

PRUNED = ["tuner=tpe", "tuner.pruner=median", "tuner.pruner_startup_trials=1", "tuner.pruner_warmup_epochs=0"]


@pytest.fixture
def prune_sweeps(tmp_path):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "prune.yaml").write_text(PRUNE_SPACE)
    return folder


@pytest.mark.slow  # two tiny trials, each in a fresh process (~60-100 s on a loaded machine); still in CI
def test_a_median_pruned_trial_is_a_finished_run_tagged_pruned(run_cli, store, prune_sweeps):
    """Each trial in its own process (the default): its epochs reach Optuna from there, through the
    journal; the worse trial stops early, FINISHED with its epochs, and the summary counts it pruned."""
    tiny = [o for o in TINY if not o.startswith("trainer.epochs")]
    result = run_cli("tune", "prune", *tiny, "trainer.epochs=3", *PRUNED, "tuner.max_trials=2",
                     f"tracking.uri={store}", env={"FASHION_LAB_SWEEPS_DIR": str(prune_sweeps)}, check=True)
    trials = {t["tags"]["fashion_lab.trial_id"]: t for t in children(store)}
    assert {t["status"] for t in trials.values()} == {"FINISHED"}
    pruned = trials["1"]
    assert pruned["tags"]["fashion_lab.pruned"] == "true" and "fashion_lab.pruned" not in trials["0"]["tags"]
    assert pruned["tags"]["fashion_lab.pruned_at_epoch"] == "1"
    assert pruned["tags"]["fashion_lab.pruned_reason"].startswith("median pruner: val_accuracy=")
    assert _metric_history(store, pruned["id"], "epochs_trained") == [1.0]  # of a budget of 3
    assert _metric_history(store, trials["0"]["id"], "epochs_trained") == [3.0]
    assert "1 completed, 1 pruned, 0 failed trials" in result.stdout, result.stdout
    assert "pruned at epoch 1: median pruner" in result.stdout

    from optuna import load_study
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    journal = prune_sweeps.parent / "outputs" / "tuner" / "prune" / "optuna.journal"
    study = load_study(study_name="prune", storage=JournalStorage(JournalFileBackend(str(journal))))
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert sorted(study.trials[0].intermediate_values) == [0, 1, 2] and list(study.trials[1].intermediate_values) == [0]


def test_a_pruner_with_a_keras_tuner_strategy_is_refused_before_any_run(run_cli, store):
    result = run_cli("tune", "search", "tuner=random", "tuner.pruner=median", f"tracking.uri={store}")
    assert result.returncode == 2
    assert result.stderr.strip() == ("fashion-lab: error: tuner.pruner='median' is not allowed: only with "
                                     "tuner.strategy tpe or cmaes (Optuna), not random; leave it none")
