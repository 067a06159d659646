"""The KerasTuner backend: random, bayesian, hyperband and grid as KerasTuner oracles on the search's
folder (with keras_tuner_fixes, which fences its internals, the only importer of keras_tuner).

Warm start (search/start.py): KerasTuner's grid starts from its entries' defaults, so the base point is
declared as the defaults; the other oracles draw the search's start points before any random values
(``try_first``), each once.

The folder is left as a Tuner leaves it, so KerasTuner's own ``kt.RandomSearch(..., overwrite=False)``
reopens a finished search."""

from __future__ import annotations

from typing import Optional

from fashion_lab.search.backend import SearchStopped, Trial
from fashion_lab.search.keras_tuner_fixes import (TooManyFailures, TrialStatus, add_completed, open_oracle, oracle_seed,
                                                  try_first)
from fashion_lab.search.space import active_values, declare

# tuner.strategy -> KerasTuner oracle class
ORACLES = {"random": "RandomSearchOracle", "bayesian": "BayesianOptimizationOracle",
           "hyperband": "HyperbandOracle", "grid": "GridSearchOracle"}  # one per config.keys.STRATEGIES


def make_oracle(search):
    """The strategy's KerasTuner oracle on the search's folder, reloaded when resuming."""
    import keras_tuner as kt

    from fashion_lab.search.study import OBJECTIVES

    t = search.cfg.tuner
    budget = dict(max_epochs=t.max_epochs, factor=t.factor) if t.strategy == "hyperband" else dict(max_trials=t.max_trials)
    if t.strategy == "bayesian":
        budget["num_initial_points"] = t.num_initial_points
    oracle = getattr(kt.oracles, ORACLES[t.strategy])(
        objective=kt.Objective(t.objective, OBJECTIVES[t.objective]), seed=oracle_seed(t.seed),
        max_consecutive_failed_trials=t.max_consecutive_failed_trials, **budget)
    hp = kt.HyperParameters()
    grid = t.strategy == "grid"
    declare(hp, search.dims, defaults=search.start[0] if grid and t.warm_start and search.start else None)
    oracle = open_oracle(oracle, str(t.directory), search.project, hp, grid=grid)
    for seed in search.seeds:  # tuner.seed_from_store: before the start points, which then skip them
        add_completed(oracle, seed.values, seed.score, t.objective)
    if not grid:  # the grid starts from its defaults and visits every other point anyway
        try_first(oracle, search.start)
    return oracle


class KerasTunerBackend:
    """A SearchBackend over a KerasTuner oracle (tuner.strategy random, bayesian, hyperband or grid)."""

    def __init__(self, search):
        self.dims = search.dims
        self.oracle = make_oracle(search)
        self.direction = self.oracle.objective.direction
        self.objective = search.cfg.tuner.objective
        self._running: dict = {}  # trial id -> KerasTuner trial, asked and not yet told

    def _trial(self, kt_trial) -> Trial:
        hp = kt_trial.hyperparameters
        budget = {k: v for k, v in hp.values.items() if k.startswith("tuner/")}  # Hyperband's own keys
        values = {**active_values(self.dims, hp), **budget}
        if kt_trial.status == TrialStatus.COMPLETED and kt_trial.score is not None:
            return Trial(kt_trial.trial_id, values, "COMPLETED", float(kt_trial.score))
        failed = kt_trial.status in (TrialStatus.FAILED, TrialStatus.INVALID)
        return Trial(kt_trial.trial_id, values, "FAILED" if failed else "RUNNING")

    def _free_worker(self) -> str:
        """A tuner id with no ongoing trial: KerasTuner hands a busy id its ongoing trial again, and
        lanes (search/lanes.py) ask while other trials run."""
        busy = set(self.oracle.ongoing_trials)
        return next(f"worker{i}" for i in range(len(busy) + 1) if f"worker{i}" not in busy)

    def ask(self, n: int) -> list[Trial]:
        asked = []
        try:
            for _ in range(n):
                kt_trial = self.oracle.create_trial(self._free_worker())
                if kt_trial.status != TrialStatus.RUNNING:
                    break  # STOPPED: the budget is spent; IDLE: Hyperband waits for this batch's results
                self._running[kt_trial.trial_id] = kt_trial
                asked.append(self._trial(kt_trial))
        except TooManyFailures as error:
            raise SearchStopped(str(error)) from None
        return asked

    def tell(self, trial_id: str, score: Optional[float] = None, failure: Optional[str] = None,
             pruned: bool = False) -> None:  # never pruned: preflight refuses tuner.pruner with KerasTuner
        kt_trial = self._running.pop(trial_id)
        if failure is not None:
            kt_trial.status, kt_trial.message = TrialStatus.FAILED, failure
        else:
            self.oracle.update_trial(trial_id, {self.objective: score})
            kt_trial.status = TrialStatus.COMPLETED
        try:
            self.oracle.end_trial(kt_trial)
        except TooManyFailures as error:
            raise SearchStopped(str(error)) from None
        self.oracle.save()  # end_trial saved before it let go of the trial: a reload would run it again

    def trials(self) -> list[Trial]:
        return [self._trial(t) for t in self.oracle.trials.values()]

    def save(self) -> None:
        self.oracle.save()
