"""Workarounds for keras-tuner 1.4.8 behaviours that break resuming a search.

Both patch a live oracle after KerasTuner has reloaded it; both rely on 1.4.x internals
(``_ordered_ids``, ``_populate_next``, ``_compare``, ``_check_consecutive_failures``), so
tests/test_tune.py exercises each through a real resumed search.
"""

from __future__ import annotations


def restore_grid_position(oracle) -> None:
    """KerasTuner's grid oracle keeps its place in the grid only in memory (not in oracle.json): after a
    reload it would stop at once. Rebuild it from the saved trials: every trial ordered by its values,
    every ended trial queued to propose its next combination (already tried ones are skipped)."""
    import functools

    from keras_tuner.src.tuners.gridsearch import LinkedList

    def values(trial_id):
        return oracle.trials[trial_id].hyperparameters.values

    started = [t for t in oracle.start_order if t in oracle.trials]
    oracle._ordered_ids = LinkedList()
    for trial_id in sorted(started, key=functools.cmp_to_key(lambda a, b: oracle._compare(values(a), values(b)))):
        oracle._ordered_ids.insert(trial_id)
    oracle._populate_next = [t for t in oracle.end_order if t in oracle.trials]


class TooManyFailures(RuntimeError):
    """``tuner.max_consecutive_failed_trials`` trials in a row failed: the search stops."""


def count_failures_from_now(oracle) -> None:
    """Replace KerasTuner's consecutive-failure check (keras-tuner 1.4.8) with one that resumes well.

    Its check scans the whole saved history, so a resumed search that once hit the limit stops
    again after its next trial, even a successful one; and it raises before saving the failed
    trial, so a resume re-runs it. Here only trailing failures ended since this command started
    count (re-running a stopped search is a deliberate retry), and the trial is saved first.
    """
    from keras_tuner.src.engine.trial import TrialStatus

    resumed_at = len(oracle.end_order)

    def check() -> None:
        streak = 0
        for trial_id in reversed(oracle.end_order[resumed_at:]):
            if oracle.trials[trial_id].status != TrialStatus.FAILED:
                break
            streak += 1
        if streak >= oracle.max_consecutive_failed_trials:
            last = oracle.trials[oracle.end_order[-1]]
            # What end_trial would have done after the check: saved, and no longer ongoing
            # (a reload re-runs ongoing trials).
            oracle._save_trial(last)
            for tuner_id, ongoing in list(oracle.ongoing_trials.items()):
                if ongoing.trial_id == last.trial_id:
                    oracle.ongoing_trials.pop(tuner_id)
            oracle.save()
            raise TooManyFailures(f"{streak} trials failed in a row (tuner.max_consecutive_failed_trials="
                                  f"{oracle.max_consecutive_failed_trials})\n{last.message or ''}")

    oracle._check_consecutive_failures = check
