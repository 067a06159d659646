"""Everything that touches KerasTuner's internals (keras-tuner 1.4.8), fenced in one module.

``open_oracle`` does what a BaseTuner does for its oracle (project folder, reload, space),
so a sweeper can ask and tell an oracle without a Tuner, and leaves the folder as a Tuner would
(``tuner0.json``), so KerasTuner's own ``kt.RandomSearch(..., overwrite=False)`` reopens it. Two workarounds patch a live oracle
after a reload, because KerasTuner's own behaviour breaks resuming a search; they rely on
1.4.x internals (``_ordered_ids``, ``_populate_next``, ``_compare``,
``_check_consecutive_failures``; ``try_first`` replaces ``_random_values``), so tests/search/test_tune.py exercises each through a real
resumed search. ``save_atomically`` makes the oracle's own saves (``oracle.json``, ``trial.json``)
atomic, so a kill or a full disk mid-save never leaves a search that cannot resume.
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_tuner.engine.trial import TrialStatus  # the sweeper's trial states

from fashion_lab.search.state_files import atomic_write_json, atomic_write_text, check_state_files


def oracle_seed(seed: int) -> int:
    """The seed a KerasTuner oracle is given for ``tuner.seed``: one more. KerasTuner reads 0 as no seed
    (``seed or random.randint(1, 10000)``), which made the default search draw other trials every time."""
    return seed + 1


def open_oracle(oracle, directory: str, project: str, hp, *, grid: bool):
    """The oracle on ``directory/project`` with the space ``hp``: reloaded (and patched) if saved there."""
    oracle._set_project_dir(directory, project)
    save_atomically(oracle)
    if os.path.exists(os.path.join(directory, project, "oracle.json")):
        check_state_files(Path(directory, project))  # one line naming a broken file, not a JSON traceback
        oracle.reload()  # trials that were running are queued to run again, with their ids
        if grid:
            restore_grid_position(oracle)
    oracle.update_space(hp)
    count_failures_from_now(oracle)
    oracle.verbose = 0  # the sweeper prints one line per trial instead
    oracle.save()  # so a kill during the first trial still resumes this search
    write_tuner_file(directory, project)
    return oracle


TUNER_FILE = "tuner0.json"  # BaseTuner's file for the default KERASTUNER_TUNER_ID


def write_tuner_file(directory: str, project: str) -> None:
    """The file a Tuner saves beside ``oracle.json``: a Tuner reloads the saved trials only when it
    exists (else it starts an empty search on the folder). A BaseTuner's own state is empty (``{}``)."""
    path = os.path.join(directory, project, TUNER_FILE)
    if not os.path.exists(path):
        atomic_write_text(path, "{}")


def save_atomically(oracle) -> None:
    """KerasTuner 1.4.8 saves the oracle and each trial through ``Stateful.save`` -> ``utils.save_json``,
    an in-place write; these replace the oracle's two savers (``save``, ``_save_trial``) with atomic ones
    writing the same JSON (``get_state``) to the same files."""
    def save():
        return atomic_write_json(oracle._get_oracle_fname(), oracle.get_state())

    def save_trial(trial):
        return atomic_write_json(os.path.join(oracle._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())

    oracle.save, oracle._save_trial = save, save_trial


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


def try_first(oracle, points: list[dict]) -> None:
    """Warm start for the oracles that draw random values (random, bayesian's initial trials, Hyperband's
    new candidates): their draws return ``points`` first (each the active values of the space), each
    once. A point some trial already holds (``_duplicate``: the same values hash, Hyperband's budget
    keys aside) is skipped, so a resumed search never runs it again."""
    queue = [dict(p) for p in points]
    draw = oracle._random_values

    def points_then_random():
        while queue:
            values = queue.pop(0)
            if not oracle._duplicate(values):
                return values
        return draw()

    oracle._random_values = points_then_random


def add_completed(oracle, values: dict, score: float, objective: str) -> str:
    """A finished run as a COMPLETED trial of the oracle (tuner.seed_from_store): counted against
    max_trials, its values never drawn again (``_record_values``), never run. Returns its trial id."""
    from keras_tuner.engine.trial import Trial

    trial_id = f"{{:0{len(str(oracle.max_trials))}d}}".format(len(oracle.trials))  # as create_trial numbers them
    hp = oracle.hyperparameters.copy()
    hp.values = dict(values)
    trial = Trial(hyperparameters=hp, trial_id=trial_id, status=TrialStatus.RUNNING)
    oracle._record_values(trial)
    oracle.trials[trial_id] = trial
    oracle.start_order.append(trial_id)
    oracle.update_trial(trial_id, {objective: score})
    trial.status = TrialStatus.COMPLETED
    oracle.end_trial(trial)
    return trial_id
