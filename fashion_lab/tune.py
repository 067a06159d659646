"""``fashion-lab tune [SWEEP] [overrides]``: a KerasTuner search whose every trial is a ``train()`` run.

The tuner has no model of its own. A trial's sampled values become Hydra override strings
(``optimizer=adam``, ``model.filters=[32,64]``), applied after the search's base overrides;
Hydra re-composes the config (so group choices work), and ``train.train`` fits and records it
exactly like ``fashion-lab train`` would, as a child of the search's parent MLflow run.

Resume: KerasTuner's state lives in ``<tuner.directory>/<project>/``; next to it
``fashion_lab.json`` keeps the space fingerprint and the parent run id, so re-running the same
command continues the same search under the same parent. Hyperband rounds re-train from
scratch to the round's epoch budget (``tuner/epochs``) rather than continuing the previous
round's weights: each round is then a complete, reproducible ``train`` run.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from fashion_lab.commands import fail
from fashion_lab import config
from fashion_lab.config import ConfigError, validate
from fashion_lab.fresh_process import call_in_fresh_process, peak_child_rss_mb
from fashion_lab.space import SpaceError, describe, fingerprint, has_intervals, parse_space, pin, to_overrides
from fashion_lab.tuner_fixes import TooManyFailures, count_failures_from_now, restore_grid_position

STRATEGIES = ("random", "bayesian", "hyperband", "grid")
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min"}
STATE_FILE = "fashion_lab.json"


# --- composing configs ----------------------------------------------------------------------

def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


# Overrides that never change what a trial trains: the search's budget and settings, where runs
# are recorded, console output, Hydra's own settings, threads and the parsed-data cache.
_NOT_TRAINED = ("tuner", "tracking", "hydra", "trainer.verbose", "trainer.threads", "data.cache")


def trained_overrides(overrides: list[str]) -> list[str]:
    """The command line's overrides that change what a trial trains (part of the search's identity)."""
    return [o for o in overrides
            if not any(_key(o) == k or _key(o).startswith(k + ".") for k in _NOT_TRAINED)]


def merge(base: list[str], extra: list[str]) -> list[str]:
    """``base`` then ``extra``, an ``extra`` key replacing the same key in ``base`` (Hydra refuses duplicates)."""
    replaced = {_key(o) for o in extra}
    return [o for o in base if _key(o) not in replaced] + list(extra)


# --- the search definition ------------------------------------------------------------------

@dataclass
class Search:
    name: str                       # sweep file name
    project: str                    # tuner state folder name (default: name)
    base: list[str]                 # overrides every trial starts from (sweep=NAME first)
    cfg: Any                        # composed base config
    dims: list
    strategy: str
    definition: str                 # YAML of the space, stored on the parent run
    swept_keys: list[str]
    fingerprint: str
    parent_run_id: Optional[str] = None
    splits: Any = None
    failures: list[str] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return Path(self.cfg.tuner.directory) / self.project

    @property
    def tracking(self) -> bool:
        return bool(self.cfg.tracking.enabled)


def _available() -> list[str]:
    return sorted(config.sweep_files())


def prepare(argv: list[str]) -> Search:
    """Parse the command line, compose and check everything; no data, no MLflow run yet."""
    name, overrides = "search", list(argv)
    if overrides and "=" not in overrides[0] and not overrides[0].startswith("-"):
        name, overrides = overrides[0], overrides[1:]
    if name not in _available():
        raise SpaceError(f"no sweep file {name!r}; available: {', '.join(_available())}")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SpaceError(f"unexpected arguments {bad}: give [SWEEP] then key=value overrides")
    base = [f"sweep={name}", *overrides]
    first = config.compose(base)
    # The file's strategy applies unless the command names a tuner; a grid file runs with the default tuner.
    if not any(_key(o) == "tuner" for o in overrides) and first.sweep.strategy in STRATEGIES[:3]:
        base.append(f"tuner={first.sweep.strategy}")
    cfg = config.compose(base, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False) if cfg.hydra.sweeper.get(
        "params") else {}
    conditions = OmegaConf.to_container(cfg.sweep.conditions)
    tuner = cfg.tuner
    if tuner.strategy not in STRATEGIES:
        raise SpaceError(f"tuner.strategy={tuner.strategy!r} is not allowed: one of {', '.join(STRATEGIES)}")
    if tuner.objective not in OBJECTIVES:
        raise SpaceError(f"tuner.objective={tuner.objective!r} is not allowed: one of {', '.join(OBJECTIVES)}")
    for key in ("max_trials", "max_epochs", "executions_per_trial", "max_consecutive_failed_trials"):
        if tuner[key] < 1:
            raise SpaceError(f"tuner.{key}={tuner[key]!r} is not allowed: an integer >= 1")
    if tuner.factor < 2:
        raise SpaceError(f"tuner.factor={tuner.factor!r} is not allowed: an integer >= 2")
    # A swept key given on the command line is pinned: the search varies the rest.
    dims = pin(parse_space(params, conditions), {_key(o): o.split("=", 1)[1] for o in overrides})
    if tuner.strategy == "grid" and has_intervals(dims):
        raise SpaceError("tuner=grid needs a space of choices only; "
                         f"{[d.key for d in dims if d.kind != 'choice']} are intervals: use tuner=random|bayesian|hyperband")
    plain = config.compose(base)
    validate(plain)  # the base config itself must be valid before anything starts
    definition = OmegaConf.to_yaml({"sweep": name, "strategy": tuner.strategy, "params": params,
                                    "conditions": conditions, "space": describe(dims),
                                    "base_overrides": base})
    swept = [f"{d.key}.name" if "." not in d.key and "name" in plain.get(d.key, {}) else d.key for d in dims]
    return Search(name=name, project=tuner.project or name, base=base, cfg=plain, dims=dims,
                  strategy=tuner.strategy, definition=definition, swept_keys=swept,
                  fingerprint=fingerprint(dims, tuner.strategy, trained_overrides(overrides)))


# --- saved state: fingerprint + parent run ---------------------------------------------------

def _load_state(search: Search) -> Optional[dict]:
    path = search.directory / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _save_state(search: Search) -> None:
    search.directory.mkdir(parents=True, exist_ok=True)
    (search.directory / STATE_FILE).write_text(json.dumps({
        "sweep": search.name, "strategy": search.strategy, "fingerprint": search.fingerprint,
        "trained_overrides": trained_overrides(search.base[1:]),
        "parent_run_id": search.parent_run_id, "tracking_uri": search.cfg.tracking.uri}, indent=2))


def check_resumable(search: Search) -> Optional[dict]:
    """The saved state to resume, None for a new search; refuses a changed space, strategy or base overrides."""
    if search.cfg.tuner.overwrite:
        shutil.rmtree(search.directory, ignore_errors=True)
        return None
    state = _load_state(search)
    if state is None and not search.directory.exists():
        return None
    if state is None or state.get("fingerprint") != search.fingerprint:
        was = ""
        if state:
            before = state.get("trained_overrides")  # absent in state files of older versions
            now = trained_overrides(search.base[1:])
            was = f" (it was {state['strategy']}" + (
                f", base overrides [{' '.join(before)}], now [{' '.join(now)}]" if before not in (None, now) else "") + ")"
        raise SpaceError(
            f"a different search already lives in {search.directory}{was}; the space, strategy or base overrides of "
            f"'{search.project}' changed. Start a new search with tuner.project=NEW_NAME (or another "
            f"tuner.directory), or discard the old one with tuner.overwrite=true")
    return state


def _open_parent(search: Search, state: Optional[dict]) -> None:
    """Reuse the saved parent run when it is in this store; otherwise open a new one."""
    from fashion_lab import tracking

    client = tracking.client_for(search.cfg.tracking)
    tracking.reap_orphans(client, tracking.ensure_experiment(client, search.cfg.tracking))
    parent = (state or {}).get("parent_run_id")
    if parent and (state or {}).get("tracking_uri") == search.cfg.tracking.uri:
        try:
            client.get_run(parent)
        except Exception:
            parent = None
    else:
        parent = None
    budget = {f"{tracking.TAG}tuner.{k}": v for k, v in OmegaConf.to_container(search.cfg.tuner).items()}
    if parent:
        client.update_run(parent, status="RUNNING")
        if tracking.TAG + "failure" in client.get_run(parent).data.tags:
            client.delete_tag(parent, tracking.TAG + "failure")  # the killed-owner note no longer applies
        tracking.set_tags(client, parent, {tracking.TAG + "owner": tracking.process_id(), **budget})
        print(f"resuming search {search.project} (parent run {parent})")
    else:
        parent = tracking.open_parent_run(
            search.cfg.tracking, name=f"search {search.project} {search.strategy}", role="search",
            strategy=search.strategy, sweep_name=search.name, swept_keys=search.swept_keys,
            definition=search.definition, tags={**budget, tracking.TAG + "fingerprint": search.fingerprint})
    search.parent_run_id = parent


# --- trials ---------------------------------------------------------------------------------

def _rss_mb() -> float:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def _finished_run(search: Search, trial_id: str, execution: int):
    """A FINISHED run already recorded for this trial (e.g. killed after the run closed, before the tuner saved)."""
    if not (search.tracking and search.parent_run_id):
        return None
    from fashion_lab import tracking

    client = tracking.client_for(search.cfg.tracking)
    runs = client.search_runs(
        [client.get_run(search.parent_run_id).info.experiment_id],
        filter_string=(f"tags.`{tracking.TAG}sweep_id` = '{search.parent_run_id}' and "
                       f"tags.`{tracking.TAG}trial_id` = '{trial_id}' and "
                       f"tags.`{tracking.TAG}execution` = '{execution}' and attributes.status = 'FINISHED'"),
        max_results=1)
    return runs[0] if runs else None


def _score(search: Search, metrics: dict, history) -> float:
    """A fresh run's objective: the best epoch's value (max val_accuracy, min val_loss), like _run_score."""
    if search.cfg.tuner.objective == "val_loss":
        return float(history["val_loss"].min())
    return float(metrics["best_val_accuracy"])


def _run_score(search: Search, run) -> float:
    """A recorded run's objective, as _score computes it: best_val_accuracy, or val_loss's minimum over epochs."""
    if search.cfg.tuner.objective == "val_loss":
        from fashion_lab import tracking

        history = tracking.client_for(search.cfg.tracking).get_metric_history(run.info.run_id, "val_loss")
        return float(min((m.value for m in history), default=float("nan")))
    return float(run.data.metrics["best_val_accuracy"])


def train_trial(*, overrides: list[str], run_name: str, parent_run_id: Optional[str], tags: dict[str, str],
                shared_splits=None, shared_data=None):
    """One execution of a trial: compose its overrides and ``train()`` it (in whatever process calls this).

    ``shared_splits`` (loaded for ``shared_data``) are reused when the trial's data config is the
    same; a trial in a fresh process loads its own (from the verified array cache).
    """
    from fashion_lab.train import train

    cfg = config.compose(overrides)
    same_data = shared_data is not None and OmegaConf.to_container(cfg.data) == OmegaConf.to_container(shared_data)
    result = train(cfg, overrides=overrides, run_name=run_name, parent_run_id=parent_run_id, tags=tags,
                   splits=shared_splits if same_data else None)
    result.model = None  # the run's artifacts hold the weights; a model does not cross processes
    return result


def run_trial(search: Search, trial) -> dict[str, float]:
    """Train one sampled configuration (``executions_per_trial`` times) with train(); the objective."""
    import keras
    import keras_tuner as kt

    from fashion_lab import tracking

    hp, tuner_cfg = trial.hyperparameters, search.cfg.tuner
    sampled = to_overrides(search.dims, hp)
    extra: list[str] = []
    if "tuner/epochs" in hp.values:  # Hyperband: this round's budget, trained from scratch
        extra.append(f"trainer.epochs={hp.values['tuner/epochs']}")
    if tuner_cfg.early_stopping_patience:
        extra.append(f"trainer.early_stopping_patience={tuner_cfg.early_stopping_patience}")
    short = (search.parent_run_id or "local")[:8]
    label = f"trial {trial.trial_id}"
    tags = {tracking.TAG + "trial_id": trial.trial_id}
    if "tuner/bracket" in hp.values:
        label += f" b{hp.values['tuner/bracket']}r{hp.values['tuner/round']}"
        tags.update({tracking.TAG + "bracket": str(hp.values["tuner/bracket"]),
                     tracking.TAG + "round": str(hp.values["tuner/round"]),
                     tracking.TAG + "hyperband_epochs": str(hp.values["tuner/epochs"])})
        if "tuner/trial_id" in hp.values:
            tags[tracking.TAG + "continues_trial"] = str(hp.values["tuner/trial_id"])
    if search.parent_run_id:
        tags.update(tracking.child_tags(search.parent_run_id, search.name, "trial", search.strategy))
    scores = []
    for execution in range(tuner_cfg.executions_per_trial):
        seeds = ([f"trainer.seed={search.cfg.trainer.seed + execution}"]
                 if tuner_cfg.executions_per_trial > 1 else [])
        overrides = merge(search.base, sampled + extra + seeds)
        done = _finished_run(search, trial.trial_id, execution)
        if done is not None:
            print(f"{label}: already recorded as run {done.info.run_id}; not re-run")
            scores.append(_run_score(search, done))
            continue
        started = time.perf_counter()
        run_name = f"{label} · {short}" + (f" x{execution}" if tuner_cfg.executions_per_trial > 1 else "")
        job = dict(overrides=overrides, run_name=run_name, parent_run_id=search.parent_run_id,
                   tags={**tags, tracking.TAG + "execution": str(execution)})
        try:
            if tuner_cfg.fresh_process:  # bounded memory: the trial's process takes its graphs with it
                result = call_in_fresh_process(train_trial, **job)
            else:
                result = train_trial(**job, shared_splits=search.splits, shared_data=search.cfg.data)
        except Exception as error:  # FAILED in MLflow by tracked_run; the search goes on
            reason = tracking.failure_reason(error).splitlines()[0][:300]
            search.failures.append(f"trial {trial.trial_id}: {reason}")
            print(f"{label} failed: {reason}", file=sys.stderr)
            raise kt.errors.FailedTrialError(reason) from error
        finally:
            if not tuner_cfg.fresh_process:  # frees the model; TF keeps ~16 MB of graphs per trial anyway
                keras.backend.clear_session()
                gc.collect()
        scores.append(_score(search, result.metrics, result.history))
        print(f"{label}: {' '.join(sampled + extra)} -> {tuner_cfg.objective}={scores[-1]:.4f} "
              f"({time.perf_counter() - started:.1f} s, rss {_rss_mb():.0f} MB, run {result.run_id})")
        del result
    if search.parent_run_id:
        memory = {"trial_rss_mb": _rss_mb()}
        if tuner_cfg.fresh_process:
            memory["trial_process_peak_rss_mb"] = peak_child_rss_mb()
        tracking.log_metrics(tracking.client_for(search.cfg.tracking), search.parent_run_id,
                             memory, step=int(trial.trial_id))
    return {tuner_cfg.objective: sum(scores) / len(scores)}


def _oracle(search: Search):
    import keras_tuner as kt

    t = search.cfg.tuner
    objective = kt.Objective(t.objective, OBJECTIVES[t.objective])
    common = dict(objective=objective, seed=t.seed, max_consecutive_failed_trials=t.max_consecutive_failed_trials)
    if t.strategy == "random":
        return kt.oracles.RandomSearchOracle(max_trials=t.max_trials, **common)
    if t.strategy == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(max_trials=t.max_trials, **common)
    if t.strategy == "grid":
        return kt.oracles.GridSearchOracle(max_trials=t.max_trials, **common)
    return kt.oracles.HyperbandOracle(max_epochs=t.max_epochs, factor=t.factor, **common)


def make_tuner(search: Search):
    """A KerasTuner BaseTuner whose HyperModel only declares the space and whose trials call train()."""
    import keras_tuner as kt

    from fashion_lab.space import declare

    class SpaceModel(kt.HyperModel):
        def build(self, hp):
            declare(hp, search.dims)

    class TrainTuner(kt.engine.base_tuner.BaseTuner):
        def run_trial(self, trial, *args, **kwargs):
            return run_trial(search, trial)

    reloading = (search.directory / "oracle.json").exists()
    tuner = TrainTuner(oracle=_oracle(search), hypermodel=SpaceModel(), directory=str(search.cfg.tuner.directory),
                       project_name=search.project, overwrite=False)
    if reloading and search.strategy == "grid":
        restore_grid_position(tuner.oracle)
    count_failures_from_now(tuner.oracle)
    tuner.save()  # so a kill during the first trial still resumes this search
    return tuner


# --- the end of a search --------------------------------------------------------------------

def _best_run(search: Search, trial_id: str):
    """The trial's best FINISHED run by the objective (of its executions_per_trial runs, the best execution)."""
    from fashion_lab import tracking

    client = tracking.client_for(search.cfg.tracking)
    runs = client.search_runs(
        [client.get_run(search.parent_run_id).info.experiment_id],
        filter_string=(f"tags.`{tracking.TAG}sweep_id` = '{search.parent_run_id}' and "
                       f"tags.`{tracking.TAG}trial_id` = '{trial_id}' and attributes.status = 'FINISHED'"),
        order_by=["attributes.start_time ASC"])
    if not runs:
        return None
    pick = min if OBJECTIVES[search.cfg.tuner.objective] == "min" else max
    return pick(runs, key=lambda run: _run_score(search, run))  # ties: the first execution


def register(search: Search, run) -> str:
    """Register the best trial's recorded run (config.yaml + model.weights.h5) as a model version.

    The version's source is the run's artifact folder: no model re-logging, no requirements
    inference, works offline. Load it with build_model(config.model) + load_weights.
    """
    from mlflow.exceptions import MlflowException

    from fashion_lab import tracking

    client = tracking.client_for(search.cfg.tracking)
    name = search.cfg.tuner.model_name
    existing = client.search_model_versions(f"name = '{name}' and run_id = '{run.info.run_id}'")
    if existing:
        return existing[0].version
    try:
        client.create_registered_model(name, description="fashion-lab CNN: config.yaml + model.weights.h5")
    except MlflowException:
        pass  # already registered by an earlier search
    version = client.create_model_version(
        name, source=run.info.artifact_uri, run_id=run.info.run_id,
        tags={tracking.TAG + "sweep_id": search.parent_run_id,
              tracking.TAG + "trial_id": run.data.tags.get(tracking.TAG + "trial_id", ""),
              tracking.TAG + "overrides": run.data.tags.get(tracking.TAG + "overrides", ""),
              tracking.TAG + "config_id": run.data.tags.get(tracking.TAG + "config_id", "")},
        description=f"best of search {search.project} ({search.strategy}); config: config.yaml, "
                    f"weights: model.weights.h5")
    return version.version


def reproduce_overrides(search: Search, run_overrides: str) -> list[str]:
    """The best trial's overrides minus tuner settings: what ``fashion-lab train`` needs."""
    return [o for o in shlex.split(run_overrides) if not _key(o).startswith("tuner")]


def finish(search: Search, tuner, aborted: Optional[str]) -> int:
    from keras_tuner.src.engine.trial import TrialStatus

    from fashion_lab import tracking

    trials = list(tuner.oracle.trials.values())
    completed = [t for t in trials if t.status == TrialStatus.COMPLETED and t.score is not None]
    failed = [t for t in trials if t.status in (TrialStatus.FAILED, TrialStatus.INVALID)]
    summary: dict[str, Any] = {"completed_trials": len(completed), "failed_trials": len(failed)}
    if aborted:
        reason = summary["stopped"] = aborted.splitlines()[0].rstrip(".")
        print(f"fashion-lab: search stopped: {reason}"
              + (f"; the best of the {len(completed)} completed trials follows" if completed else ""), file=sys.stderr)
    if not completed:
        reasons = "; ".join(search.failures[-3:]) or (aborted or "no trial ran").splitlines()[0]
        print(f"fashion-lab: error: all {len(trials)} trials of search {search.project} failed, "
              f"there is no best configuration. Last reasons: {reasons}", file=sys.stderr)
        if search.parent_run_id:
            tracking.close_parent_run(search.cfg.tracking, search.parent_run_id, status="FAILED",
                                      summary={**summary, "error": "all trials failed"})
        return 1
    best = tuner.oracle.get_best_trials(1)[0]
    summary[f"best_trial_{search.cfg.tuner.objective}"] = float(best.score)  # mean over its executions
    print(f"search {search.project}: {len(completed)} completed, {len(failed)} failed trials")
    print(f"best trial {best.trial_id}: {search.cfg.tuner.objective}={best.score:.4f}")
    from fashion_lab.stats import search_caveat

    print(search_caveat(len(completed), int(search.cfg.tuner.executions_per_trial)))
    overrides = merge(search.base, to_overrides(search.dims, best.hyperparameters))
    if search.parent_run_id:
        run = _best_run(search, best.trial_id)
        if run is not None:
            overrides = reproduce_overrides(search, run.data.tags.get(tracking.TAG + "overrides", ""))
            m = run.data.metrics
            version = register(search, run)
            summary.update(best_val_accuracy=m["best_val_accuracy"], test_accuracy=m["test_accuracy"],
                           test_loss=m["test_loss"], best_trial_id=best.trial_id, best_run_id=run.info.run_id,
                           best_overrides=" ".join(overrides),
                           registered_model=f"{search.cfg.tuner.model_name}/{version}")
            print(f"best run {run.info.run_id}: test_accuracy={m['test_accuracy']:.4f} "
                  f"(test set evaluated once, never used for selection)")
            print(f"registered model {search.cfg.tuner.model_name} version {version}")
        tracking.close_parent_run(search.cfg.tracking, search.parent_run_id,
                                  status="FAILED" if aborted else "FINISHED", summary=summary)
    else:
        overrides = [o for o in overrides if not _key(o).startswith("tuner")]
    print("reproduce: fashion-lab train " + " ".join(shlex.quote(o) for o in overrides))
    return 1 if aborted else 0  # cut short: the budget was not searched, even with a best trial so far


# --- the command ----------------------------------------------------------------------------

USAGE = """usage: fashion-lab tune [SWEEP] [key=value ...]

Search the space of sweeps/SWEEP.yaml (default: search) with KerasTuner; every trial is a
`fashion-lab train` run recorded as a child of one parent MLflow run. Re-running the same
command resumes the search. Strategies: tuner=random|bayesian|hyperband|grid.
  fashion-lab tune data=small tuner.max_trials=20
  fashion-lab tune bn_placement tuner=bayesian tuner.max_trials=3
  fashion-lab tune tuner=hyperband tuner.max_epochs=9 tuner.factor=3
A swept key given as an override (e.g. model.filters=[16,32]) is fixed, the rest searched.
Settings: tuner.max_trials, tuner.max_epochs, tuner.factor, tuner.executions_per_trial,
tuner.early_stopping_patience, tuner.directory (default outputs/tuner), tuner.project,
tuner.overwrite=true (start over), tuner.model_name (registry name, default fashion-lab-cnn),
tuner.fresh_process=false (train trials in the search process: faster start, memory grows),
tuner.max_consecutive_failed_trials. Exit status: 0 done; 1 every trial failed, or the search stopped
after that many failures in a row (the best completed trial is still reported and registered);
2 bad arguments or a changed search under the same project; 130 interrupted (run it again to resume).
"""


def tune_command(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + "\nsweeps: " + ", ".join(_available()))
        return 0
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        search = prepare(argv)
        state = check_resumable(search)
    except (SpaceError, ConfigError) as error:
        fail(str(error))
    except (HydraException, OmegaConfBaseException) as error:
        # Hydra's message names the override; the reason (e.g. "not a valid bool") is in its cause.
        reason = f": {str(error.__cause__).splitlines()[0]}" if error.__cause__ else ""
        fail(f"{error}".splitlines()[0] + reason)

    from fashion_lab.data import load_data
    from fashion_lab.tracking import Terminated, sigterm_raises

    splits = load_data(search.cfg.data)  # fails early on missing data; warms the array cache
    search.splits = None if search.cfg.tuner.fresh_process else splits  # shared by in-process trials
    del splits
    if search.tracking:
        _open_parent(search, state)
    tuner = make_tuner(search)
    _save_state(search)
    aborted = None
    try:
        with sigterm_raises():  # a SIGTERM closes the parent run KILLED and stops the trial's process
            tuner.search()
    except TooManyFailures as error:
        aborted = str(error)
    except (KeyboardInterrupt, Terminated):
        if search.parent_run_id:
            from fashion_lab import tracking
            tracking.close_parent_run(search.cfg.tracking, search.parent_run_id, status="KILLED", summary={})
        print("fashion-lab: search interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return finish(search, tuner, aborted)
