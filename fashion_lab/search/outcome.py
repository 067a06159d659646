"""The end of a search: its best trial (ties: the earliest), the best run, the comparison with chance and
the base configuration, the registered model, and the summary on the parent run."""

from __future__ import annotations

import shlex
import sys
from typing import Any, Optional

from fashion_lab.config import override_key
from fashion_lab.search.backend import best as backend_best
from fashion_lab.search.space import to_overrides
from fashion_lab.search.study import OBJECTIVES, Search, merge
from fashion_lab.sweeps import campaign

def _run_score(search: Search, run) -> float:
    """A recorded run's objective: best_val_accuracy, or val_loss's minimum over epochs."""
    from fashion_lab.record import tracking

    if search.cfg.tuner.objective == "val_loss":
        return tracking.min_metric(search.cfg.tracking, run.run_id, "val_loss")
    return float(run.metrics["best_val_accuracy"])


def best_run(search: Search, trial_id: str):
    """The trial's best FINISHED run by the objective (of its executions, the best; ties: the first)."""
    from fashion_lab.record import tracking

    runs = tracking.children(search.cfg.tracking, search.parent_run_id, trial_id=trial_id, finished=True)
    pick = min if OBJECTIVES[search.cfg.tuner.objective] == "min" else max
    return pick(runs, key=lambda run: _run_score(search, run)) if runs else None


CHANCE = 0.10  # 10 balanced classes


def versus_chance_and_base(search: Search, best, completed: list) -> str:
    """The best trial against chance and against the base configuration when a trial ran it."""
    from fashion_lab.config import flatten

    base = flatten(search.cfg)
    def is_base(trial) -> bool:
        pairs = [o.split("=", 1) for o in to_overrides(search.dims, trial.values)]
        return all(str(base.get(k, base.get(f"{k}.name"))) == v for k, v in pairs)

    text = f"chance is {CHANCE:.2f} (10 classes)"
    if search.cfg.tuner.objective == "val_accuracy":
        text += f": the best is {(best.score - CHANCE) * 100:+.1f} pt above it"
    found = [t for t in completed if is_base(t)]
    if found:
        return text + (f"; the base configuration (trial {found[0].trial_id}) scored {found[0].score:.4f}, "
                       f"{(best.score - found[0].score) * 100:+.1f} pt from the best (single runs)")
    return text + "; the base configuration was not among the trials"


def _register(search: Search, run, name: str) -> Optional[str]:
    """Register the best run's network as an MLflow Keras model (rebuilt from its config and weights
    when the run did not log one), once per run; None, with the reason, when it has nothing to rebuild.
    Below tuner.register_min_accuracy the version carries a fashion_lab.warning tag, and the summary says so."""
    from fashion_lab.record import tracking
    from fashion_lab.run.registered_model import log_run_model

    existing = tracking.registered_version(search.cfg.tracking, name, run.run_id)
    if existing:
        return existing
    try:
        model_uri = log_run_model(search.cfg, run.run_id)
    except LookupError as error:  # tracking.log_weights=false and no logged model
        print(f"fashion-lab: no model registered: {error}", file=sys.stderr)
        return None
    accuracy, floor = float(run.metrics["test_accuracy"]), float(search.cfg.tuner.register_min_accuracy)
    warning = {} if accuracy >= floor else {tracking.TAG + "warning": (
        f"test accuracy {accuracy:.4f} is below tuner.register_min_accuracy={floor:g} (chance {CHANCE:.2f})")}
    if warning:
        print(f"fashion-lab: warning: registering {name} tagged fashion_lab.warning: "
              f"{warning[tracking.TAG + 'warning']}", file=sys.stderr)
    return tracking.register_model(
        search.cfg.tracking, model_uri, name,
        tags={tracking.TAG + k: run.tags.get(tracking.TAG + k, "") for k in ("trial_id", "overrides", "config_id")}
        | {tracking.TAG + "sweep_id": search.parent_run_id} | warning,
        description=f"best of search {search.project} ({search.strategy}); an MLflow Keras model "
                    f"(float32 images (N, 28, 28, 1) in, class probabilities (N, 10) out)")


def reproduce_overrides(run_overrides: str) -> list[str]:
    """The best trial's overrides minus tuner settings: what ``fashion-lab train`` needs."""
    return [o for o in shlex.split(run_overrides) if not override_key(o).startswith("tuner")]


def _stopped_or_empty(search: Search, trials: list, completed: list, summary: dict, aborted: Optional[str]) -> bool:
    """Say why a search stopped early; with no completed trial, close its parent FAILED: False then."""
    if aborted:
        reason = summary["stopped"] = aborted.splitlines()[0].rstrip(".")
        print(f"fashion-lab: search stopped: {reason}"
              + (f"; the best of the {len(completed)} completed trials follows" if completed else ""), file=sys.stderr)
    if completed:
        return True
    reasons = "; ".join(search.failures[-3:]) or (aborted or "no trial ran").splitlines()[0]
    print(f"fashion-lab: error: all {len(trials)} trials of search {search.project} failed, "
          f"there is no best configuration. Last reasons: {reasons}", file=sys.stderr)
    campaign.close_parent(search.cfg.tracking, search.parent_run_id, "FAILED", {**summary, "error": "all trials failed"})
    return False


def finish(search: Search, backend, aborted: Optional[str]) -> bool:
    """Print and record the outcome, register the best run; True when the whole budget was searched."""
    from fashion_lab.record import tracking

    trials = backend.trials()
    completed = [t for t in trials if t.status == "COMPLETED"]
    failed = [t for t in trials if t.status == "FAILED"]
    pruned = [t for t in trials if t.status == "PRUNED"]  # stopped early by tuner.pruner: not failures
    summary: dict[str, Any] = {"completed_trials": len(completed), "failed_trials": len(failed)}
    if search.cfg.tuner.pruner != "none" or pruned:
        summary["pruned_trials"] = len(pruned)
    if not _stopped_or_empty(search, trials, completed, summary, aborted):
        return False
    # A library may break ties by the order it reloads its trials in (KerasTuner: a glob);
    # backend.best takes the earliest of the tied trials, so the record names the same best every time.
    best = backend_best(completed, backend.direction)
    objective = search.cfg.tuner.objective
    summary[f"best_trial_{objective}"] = float(best.score)  # mean over its executions
    print(f"search {search.project}: {len(completed)} completed, "
          + (f"{len(pruned)} pruned, " if "pruned_trials" in summary else "") + f"{len(failed)} failed trials")
    print(f"best trial {best.trial_id}: {objective}={best.score:.4f}")
    print(f"against chance and the base: {versus_chance_and_base(search, best, completed)}")
    from fashion_lab.analysis.answers import search_caveat

    print(search_caveat(len(completed), int(search.cfg.tuner.executions_per_trial)))
    overrides = [o for o in merge(search.base, to_overrides(search.dims, best.values))
                 if not override_key(o).startswith("tuner")]
    run = best_run(search, best.trial_id) if search.parent_run_id else None
    if run is not None:
        overrides = reproduce_overrides(run.tags.get(tracking.TAG + "overrides", ""))
        m, name = run.metrics, search.cfg.tuner.model_name
        version = _register(search, run, name)
        summary.update(best_val_accuracy=m["best_val_accuracy"], test_accuracy=m["test_accuracy"],
                       test_loss=m["test_loss"], best_trial_id=best.trial_id, best_run_id=run.run_id,
                       best_overrides=" ".join(overrides), **({"registered_model": f"{name}/{version}"} if version else {}))
        print(f"best run {run.run_id}: test_accuracy={m['test_accuracy']:.4f} "
              f"(test set evaluated once, never used for selection)")
        if version:
            below = m["test_accuracy"] < float(search.cfg.tuner.register_min_accuracy)
            print(f"registered model {name} version {version}" + (
                f" (tagged fashion_lab.warning: below tuner.register_min_accuracy="
                f"{search.cfg.tuner.register_min_accuracy:g})" if below else ""))
    campaign.close_parent(search.cfg.tracking, search.parent_run_id, "FAILED" if aborted else "FINISHED", summary)
    print("reproduce: fashion-lab train " + " ".join(shlex.quote(o) for o in overrides))
    return not aborted
