"""The search-backend seam: what a strategy must do for the sweeper, and the registry of strategies.

A backend proposes trials (``ask``), learns their outcome (``tell``), lists every trial it holds
(``trials``, from which ``best`` is read) and keeps its state on disk (``save``), so the same command
resumes. The sweeper launches each trial's jobs, records them as MLflow child runs and tells the
backend; it knows no library. Strategies are loaded by name, lazily: a new backend is one module,
one line in ``BACKENDS``, and one ``conf/tuner/NAME.yaml``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Optional, Protocol

from fashion_lab.config.keys import OPTUNA_STRATEGIES as OPTUNA, STRATEGIES

# tuner.strategy -> "module:class" of its backend (imported only when the strategy is used)
BACKENDS = {**{name: "fashion_lab.search.keras_tuner:KerasTunerBackend" for name in STRATEGIES if name not in OPTUNA},
            **{name: "fashion_lab.search.optuna_backend:OptunaBackend" for name in OPTUNA}}
# tuner.strategy -> (the libraries its backend needs beyond the core install, the pip extra that installs them)
REQUIRES = {"tpe": ("optuna", "fashion-lab[optuna]"), "cmaes": ("optuna,cmaes", "fashion-lab[optuna]")}


def unavailable(strategy: str) -> Optional[str]:
    """Why ``strategy`` cannot run here (its library is not installed), or None; checked before any run."""
    import importlib.util

    libraries, extra = REQUIRES.get(strategy, ("", None))
    library = next((name for name in libraries.split(",") if name and importlib.util.find_spec(name) is None), None)
    if library:
        return f"tuner.strategy={strategy} needs {library}, which is not installed: pip install '{extra}'"
    return None


@dataclass
class Trial:
    """One trial as the search sees it: its id, the values of the space's active entries (a budgeted
    strategy adds its own, such as Hyperband's ``tuner/epochs``), its state and score."""
    trial_id: str
    values: dict = field(default_factory=dict)
    status: str = "RUNNING"        # RUNNING | COMPLETED | FAILED | PRUNED (stopped early by tuner.pruner)
    score: Optional[float] = None  # tuner.objective, the mean over the trial's executions


class SearchStopped(Exception):
    """The backend ended the search before its budget (tuner.max_consecutive_failed_trials in a row)."""


class SearchBackend(Protocol):
    direction: str  # "max" or "min": how scores compare

    def ask(self, n: int) -> list[Trial]:
        """Up to ``n`` new trials to run now; none when the budget is spent (or the strategy waits)."""

    def tell(self, trial_id: str, score: Optional[float] = None, failure: Optional[str] = None,
             pruned: bool = False) -> None:
        """A trial's outcome: its score (``pruned``: stopped early by the pruner), or the reason it
        failed. May raise SearchStopped."""

    def trials(self) -> list[Trial]:
        """Every trial the backend holds, this command's and the resumed ones."""

    def save(self) -> None:
        """Write the state a resumed command reopens."""


def open_backend(search) -> SearchBackend:
    """The backend of ``search.strategy`` on the search's folder (reopened when resuming)."""
    module, _, name = BACKENDS[search.strategy].partition(":")
    return getattr(importlib.import_module(module), name)(search)


def epoch_hook(cfg):
    """A trial job's per-epoch "should it stop?" hook from its strategy's backend (``tuner.pruner``), or
    None: ``hook(epoch, logs) -> reason or None``, called in the run's process (so it must pickle)."""
    trial = cfg.sweep.get("trial") or {}
    if cfg.tuner.pruner == "none" or "trial_id" not in trial or cfg.tuner.strategy not in OPTUNA:
        return None
    module = BACKENDS[cfg.tuner.strategy].partition(":")[0]
    return importlib.import_module(module).epoch_hook(cfg, int(trial["trial_id"]))


def _order(trial_id: str):
    return (0, int(trial_id), "") if str(trial_id).isdigit() else (1, 0, str(trial_id))


def best(trials: list[Trial], direction: str) -> Optional[Trial]:
    """The best completed trial; among equal scores the one started first (lowest trial id), so the
    record names the same best however a library orders its trials."""
    completed = [t for t in trials if t.status == "COMPLETED" and t.score is not None]
    if not completed:
        return None
    sign = -1.0 if direction == "max" else 1.0
    return min(completed, key=lambda t: (sign * float(t.score), _order(t.trial_id)))
