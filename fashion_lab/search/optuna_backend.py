"""The Optuna backend: TPE (``tuner=tpe``) and CMA-ES (``tuner=cmaes``) through Optuna's ask-and-tell
interface; the only importer of optuna.

CMA-ES samples numbers only: the space's choices (and an entry alone in a one-entry space) are drawn by
Optuna's independent random sampler, each trial afresh, while CMA-ES guides the intervals; a space of
choices only is refused (study.prepare), as CMA-ES would have nothing to guide.

Optuna keeps its own state: a journal file (``optuna.journal``, Optuna's JournalStorage) in the search's
folder beside ``fashion_lab.json``, appended as each trial is asked and told, so the same command reopens
the study, also after kill -9. A trial asked but never told (the command died while it ran) is asked
again first, under its own number, as KerasTuner re-runs its ongoing trials: no trial is duplicated, and
the job reuses its run when that had finished. A trial whose values never reached the journal in full is
marked failed instead. Trial ids are Optuna's trial numbers; ``tuner.max_trials`` counts every trial
that started. The search's start points (search/start.py) are Optuna's enqueued trials, each skipped when
the study already holds it, so a resumed search does not run them again.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from fashion_lab.search.backend import SearchStopped, Trial

JOURNAL = "optuna.journal"


def _suggest(trial, d):
    """One entry of the space on an Optuna trial: categorical, float or int, log sampling kept."""
    if d.kind == "choice":
        return trial.suggest_categorical(d.key, list(d.choices))
    if d.kind == "int":
        return trial.suggest_int(d.key, int(d.low), int(d.high), log=d.log)
    return trial.suggest_float(d.key, float(d.low), float(d.high), log=d.log)


def _distribution(optuna, d):
    """An entry's Optuna distribution, as ``_suggest`` declares it (for a seeded trial)."""
    if d.kind == "choice":
        return optuna.distributions.CategoricalDistribution(list(d.choices))
    if d.kind == "int":
        return optuna.distributions.IntDistribution(int(d.low), int(d.high), log=d.log)
    return optuna.distributions.FloatDistribution(float(d.low), float(d.high), log=d.log)


def _active_keys(dims, params: dict) -> list[str]:
    """The entries a trial with ``params`` must hold (an entry whose condition does not hold is not)."""
    return [d.key for d in dims if d.parent is None or params.get(d.parent) in d.parent_values]


def _sampler(optuna, tuner, seed: int):
    """tuner.strategy's sampler; num_initial_points is its n_startup_trials (null: Optuna's default)."""
    startup = {} if tuner.num_initial_points is None else {"n_startup_trials": tuner.num_initial_points}
    if tuner.strategy == "cmaes":  # the independent sampling of choices is said once, in the docs, not per trial
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, **startup)
    return optuna.samplers.TPESampler(seed=seed, **startup)


def storage(search):
    """The search's journal storage (process-safe: trials' processes open it too, for pruning)."""
    import optuna

    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(search.directory / JOURNAL)))


def open_study(search):
    """The search's study on its journal (created, or reopened when resuming) with a seeded sampler."""
    import optuna

    from fashion_lab.search.study import OBJECTIVES

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweeper prints one line per trial instead
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    t = search.cfg.tuner
    search.directory.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=storage(search), study_name=search.project, load_if_exists=True,
                                direction="maximize" if OBJECTIVES[t.objective] == "max" else "minimize")
    # Seeded by tuner.seed and the trials already held: a resumed study draws on instead of repeating
    # the first command's draws.
    study.sampler = _sampler(optuna, t, t.seed + len(study.trials))
    return study


class OptunaBackend:
    """A SearchBackend over an Optuna study (tuner.strategy tpe or cmaes)."""

    def __init__(self, search):
        import optuna
        from optuna.trial import TrialState

        self.State = TrialState
        self.dims, self.tuner = search.dims, search.cfg.tuner
        self.study = open_study(search)
        self.direction = "max" if self.study.direction.name == "MAXIMIZE" else "min"
        self._streak = 0  # failures in a row told by this command (tuner.max_consecutive_failed_trials)
        self._orphans = []  # trials a previous command asked and never told: asked again first
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if all(k in frozen.params for k in _active_keys(self.dims, frozen.params)):
                self._orphans.append(frozen)
            else:  # killed between Optuna's ask and its last suggestion: nothing ran
                self.study.tell(frozen.number, state=TrialState.FAIL)
        for seed in search.seeds:  # tuner.seed_from_store: before the start points, which then skip them
            self.study.add_trial(optuna.trial.create_trial(
                params=seed.values, value=seed.score, user_attrs={"seeded_from_runs": seed.run_ids},
                distributions={d.key: _distribution(optuna, d) for d in self.dims if d.key in seed.values}))
        for point in search.start:
            self.study.enqueue_trial(point, skip_if_exists=True)

    def _started(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=[s for s in self.State if s != self.State.WAITING]))

    def ask(self, n: int) -> list[Trial]:
        asked = []
        while len(asked) < n and self._orphans:
            frozen = self._orphans.pop(0)
            asked.append(Trial(str(frozen.number), dict(frozen.params)))
        while len(asked) < n and self._started() < self.tuner.max_trials:
            trial = self.study.ask()  # an enqueued start point first, else TPE's (or the startup's) draw
            values: dict = {}
            for d in self.dims:  # parents before their dependants
                if d.parent is None or values.get(d.parent) in d.parent_values:
                    values[d.key] = _suggest(trial, d)
            asked.append(Trial(str(trial.number), values))
        return asked

    def tell(self, trial_id: str, score: Optional[float] = None, failure: Optional[str] = None,
             pruned: bool = False) -> None:
        if failure is None:  # a pruned trial's value is its last reported epoch, as Optuna keeps it
            self.study.tell(int(trial_id), *((None, self.State.PRUNED) if pruned else (float(score), None)))
            self._streak = 0
            return
        self.study.tell(int(trial_id), state=self.State.FAIL)
        self._streak += 1
        limit = self.tuner.max_consecutive_failed_trials
        if self._streak >= limit:
            raise SearchStopped(f"{self._streak} trials failed in a row (tuner.max_consecutive_failed_trials="
                                f"{limit})\n{failure}")

    def trials(self) -> list[Trial]:
        status = {self.State.COMPLETE: "COMPLETED", self.State.FAIL: "FAILED", self.State.PRUNED: "PRUNED"}
        return [Trial(str(t.number), dict(t.params), status.get(t.state, "RUNNING"),
                      t.value if t.state == self.State.COMPLETE else None)
                for t in self.study.get_trials(deepcopy=False) if t.state != self.State.WAITING]

    def save(self) -> None:
        """Nothing to write: the journal holds every ask and tell as it happens."""


# --- pruning: in the trial's own process ------------------------------------------------------

def _pruner(optuna, name: str, startup: int, warmup: int):
    if name == "wilcoxon":  # against the best trial, paired over the epochs both reported
        return optuna.pruners.WilcoxonPruner(n_startup_steps=warmup)
    return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


@dataclass
class Pruning:
    """A trial's per-epoch hook: reports the epoch's objective to its Optuna trial on the search's journal
    (process-safe: the sweeper holds the same file) and returns why to stop when the pruner prunes.
    Plain fields, so it pickles into a fresh trial process; the study opens there, on the first epoch."""
    journal: str
    study_name: str
    number: int
    objective: str
    pruner: str
    startup: int
    warmup: int
    _trial: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self):
        return {**self.__dict__, "_trial": None}

    def _open(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(self.journal))
        study = optuna.load_study(study_name=self.study_name, storage=storage,
                                  pruner=_pruner(optuna, self.pruner, self.startup, self.warmup))
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(self.study_name), self.number)
        return optuna.trial.Trial(study, trial_id)

    def __call__(self, epoch: int, logs: dict) -> Optional[str]:
        value = logs.get(self.objective)
        if value is None or not math.isfinite(float(value)):
            return None  # a diverged epoch is the run's failure, not the pruner's call
        self._trial = self._trial or self._open()
        self._trial.report(float(value), epoch)
        if not self._trial.should_prune():
            return None
        than = "the median of the completed trials" if self.pruner == "median" else "the best trial (Wilcoxon test)"
        return f"{self.pruner} pruner: {self.objective}={float(value):.4f} at epoch {epoch + 1} is worse than {than}"


def epoch_hook(cfg, number: int) -> Pruning:
    """Trial ``number``'s pruning hook, on the journal of the search the job belongs to."""
    t = cfg.tuner
    project = t.project or cfg.sweep.name or "search"  # as study.prepare names the search (Search.project)
    return Pruning(str(Path(t.directory) / project / JOURNAL), project, number, t.objective,
                   t.pruner, t.pruner_startup_trials, t.pruner_warmup_epochs)
