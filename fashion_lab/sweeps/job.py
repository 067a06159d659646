"""One job of any sweep, on any launcher: a grid point or a trial, trained as a child of the sweep's
parent run, and the ``JobResult`` it hands back to its sweeper (it pickles across processes).

``run_job`` skips a point already FINISHED under the parent (same config and seed), else trains it.
The parent id and the trial reach the job in its overrides (``sweep.parent_run_id``, ``sweep.trial``),
so it needs nothing else. It never raises on a failure: a raising job would stop Hydra's sweepers.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import gc
import math
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, open_dict

from fashion_lab.config import ConfigError, config_hash, is_plumbing, override_key, point_name
from fashion_lab.sweeps import grid as sweep, pack as packs


@dataclass
class JobResult:
    """What a job hands back to its sweeper: plain data, so every launcher can pickle it."""
    status: str = "FAILED"               # FINISHED | FAILED | LOST (the job died without a result)
    reason: Optional[str] = None         # why it failed or was lost, first lines
    run_id: Optional[str] = None
    name: Optional[str] = None           # the point's name, or "trial 3"
    overrides: list = field(default_factory=list)
    trial: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    objectives: dict = field(default_factory=dict)   # tuner.objective -> the run's value
    pruned: Optional[dict] = None        # {"epoch": N, "reason": ...}: the pruner stopped it (a FINISHED run)
    rss_mb: float = math.nan             # this process after the job
    peak_child_rss_mb: float = math.nan  # the fresh trial process's peak (math.nan when none)

    @classmethod
    def lost(cls, reason: str) -> "JobResult":
        return cls(status="LOST", reason=reason)


# --- one job: a grid point or a trial ------------------------------------------------------

def round_start(cfg, parent: Optional[str], trial: dict[str, str], folder: Path):
    """Where a promoted Hyperband round starts: (WarmStart, tags) continuing its previous round's run,
    whose weights come from the record (so any launcher, any machine sharing the store, works);
    else (None, tags) with the reason it trains from scratch, also printed in one line."""
    from fashion_lab.record import tracking
    from fashion_lab.run.train import WarmStart

    earlier = trial.get("continues_trial")
    if not earlier:
        return None, {}  # a first round, or not Hyperband
    if not cfg.tuner.continue_rounds:
        return None, {tracking.TAG + "from_scratch": "tuner.continue_rounds=false"}
    execution = trial.get("execution", "0")
    try:
        run = (tracking.round_run(cfg.tracking, parent, earlier, execution)
               if parent and cfg.tracking.enabled else None)
        if run is None:
            reason = (f"no FINISHED run of trial {earlier} (execution {execution}) under parent run {parent}"
                      if parent and cfg.tracking.enabled else "nothing recorded to continue (tracking.enabled=false)")
        elif (stopped := int(run.metrics.get("epochs_completed", 0))) >= cfg.trainer.epochs:
            reason = f"run {run.run_id} already trained {stopped} epochs, this round's budget is {cfg.trainer.epochs}"
        else:
            weights = tracking.download_weights(cfg.tracking, run.run_id, folder)
            return WarmStart(weights, stopped, run.run_id), {}
    except Exception as error:  # noqa: BLE001 - a round that cannot continue still trains
        reason = f"could not take trial {earlier}'s weights from the record: {type(error).__name__}: {error}"
    reason = reason.splitlines()[0][:500]
    print(f"fashion-lab: trial {trial.get('trial_id')} trains from scratch: {reason}", file=sys.stderr)
    return None, {tracking.TAG + "from_scratch": reason}


def race_start(cfg, folder: Path):
    """Where a promoted arm of a race starts (``sweep.continues_run``, set by the race sweeper): the
    recorded weights of its previous rung's run, as a Hyperband round continues; (None, {}) otherwise.
    Unlike a Hyperband round it never falls back to scratch: a rung trained from scratch would be
    measured at the wrong budget, so a missing run fails this job with the reason."""
    from fashion_lab.record import tracking
    from fashion_lab.run.train import WarmStart

    earlier = cfg.sweep.continues_run
    if not earlier:
        return None, {}
    stopped = int(tracking.read_run(cfg.tracking, earlier).metrics.get("epochs_completed", 0))
    if stopped >= cfg.trainer.epochs:
        raise ConfigError(f"sweep.continues_run={earlier} already trained {stopped} epochs, "
                          f"this rung's budget is {cfg.trainer.epochs}")
    weights = tracking.download_weights(cfg.tracking, earlier, folder)
    return WarmStart(weights, stopped, earlier), {}


def _train(cfg, overrides: list[str], name: Optional[str], parent: Optional[str], tags: dict[str, str],
           trial: Optional[dict[str, str]] = None, epoch_hook=None) -> dict:
    """train() and what a sweeper needs of it (it crosses processes, so plain data only). Each job
    loads its data (from the verified array cache: a fraction of a second)."""
    from fashion_lab.run.train import print_result, train

    with tempfile.TemporaryDirectory(prefix="fashion-lab-round-") as folder:
        start, start_tags = (race_start(cfg, Path(folder)) if cfg.sweep.continues_run
                             else round_start(cfg, parent, trial or {}, Path(folder)))
        result = train(cfg, overrides=overrides, run_name=name, parent_run_id=parent, tags={**tags, **start_tags},
                       start=start, epoch_hook=epoch_hook)
    print_result(result)
    metrics = {k: float(v) for k, v in result.metrics.items()}
    return {"run_id": result.run_id, "metrics": metrics, "pruned": result.pruned,
            "objectives": {"val_accuracy": metrics["best_val_accuracy"],
                           "val_loss": float(result.history["val_loss"].min()),
                           "last_val_accuracy": float(result.history["val_accuracy"].iloc[-1])}}  # a race's rung


def _recorded(cfg, run) -> dict[str, Any]:
    from fashion_lab.record import tracking

    metrics = dict(run.metrics)
    pruned = ({"epoch": int(run.tag("pruned_at_epoch")), "reason": run.tag("pruned_reason", "")}
              if run.tag("pruned") == "true" else None)
    return {"run_id": run.run_id, "metrics": metrics, "pruned": pruned,
            "objectives": {"val_accuracy": metrics.get("best_val_accuracy", math.nan),
                           "val_loss": tracking.min_metric(cfg.tracking, run.run_id, "val_loss"),
                           "last_val_accuracy": metrics.get("val_accuracy", math.nan)}}  # the latest step's value


def _said_in_one_line(error: Exception) -> bool:
    """Errors whose one line says all there is (bad config, a store that can't be written, a diverged loss,
    missing or corrupt data): no traceback after it."""
    from fashion_lab.record import tracking

    return isinstance(error, (ConfigError, tracking.StoreUnwritable, tracking.TrainingDiverged)) or \
        type(error).__name__ in ("DataNotFoundError", "CorruptDataError")


def run_job(cfg: DictConfig, epoch_hook=None) -> JobResult | list[JobResult]:
    """One multirun job: ``train(cfg)`` as a child of the sweep's parent run (a pack: ``run_pack``). Never raises: the run
    is FAILED with its reason (a raise would stop Hydra's sweepers). ``epoch_hook``: a search's pruner, for train()."""
    from hydra.core.hydra_config import HydraConfig

    from fashion_lab.record import tracking
    from fashion_lab.runtime.fresh_process import memory_mb
    from fashion_lab.runtime.warm_worker import call_in_warm_worker, peak_mb

    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = [o for o in (hydra_cfg.overrides.task if hydra_cfg else []) if not is_plumbing(override_key(o))]
    parent, trial = cfg.sweep.parent_run_id, {k: str(v) for k, v in (cfg.sweep.trial or {}).items()}
    label, name = _names(cfg, overrides, parent, trial)
    _set_job_threads(cfg, hydra_cfg)
    if cfg.sweep.pack_seeds:  # sweep.pack: this job's seeds as towers of one model, a JobResult each
        return run_pack(cfg, overrides, parent, _tags(cfg, parent, trial))
    fresh = bool(trial) and cfg.tuner.fresh_process  # a long search's memory stays flat on any launcher
    result = JobResult(name=label, overrides=overrides, trial=trial)
    try:  # train() validates the point (a bad one fails as a FAILED run, like any other error)
        if done := _finished_before(cfg, parent, trial):
            print(f"{label or 'point'}: already recorded as run {done[-1].run_id}; not re-run")
            fresh = False
            result = dataclasses.replace(result, status="FINISHED", **_recorded(cfg, done[-1]))
        else:
            with contextlib.suppress(Exception):  # progress is a courtesy: never a reason to fail a point
                print(progress(cfg, parent, trial, hydra_cfg), flush=True)
            job = dict(cfg=cfg, overrides=overrides, name=name, parent=parent, tags=_tags(cfg, parent, trial),
                       trial=trial, epoch_hook=epoch_hook)
            # A worker keeps the thread count and op determinism of its first trial: part of its key.
            worker = dict(trials_per_worker=cfg.tuner.trials_per_worker,
                          key=(cfg.trainer.threads, cfg.trainer.deterministic))
            trained = call_in_warm_worker(_train, **worker, **job) if fresh else _train(**job)
            result = dataclasses.replace(result, status="FINISHED", **trained)
        if (stop := tracking.take_signal()) is not None:  # a signal a library swallowed: stop after this point
            raise stop
    except Exception as error:  # noqa: BLE001 - a failing point must not stop the others
        if (stop := tracking.take_signal(error)) is not None:  # Ctrl-C or SIGTERM, re-wrapped by a library
            raise stop from error
        result.reason = tracking.failure_reason(error)[:2000]
        print(f"fashion-lab: {label or 'point'} FAILED: {tracking.failure_line(error)}", file=sys.stderr)
        if not _said_in_one_line(error):
            traceback.print_exc()
    finally:
        if trial and not fresh and "keras" in sys.modules:  # frees the model; TF keeps ~16 MB of graphs anyway
            sys.modules["keras"].backend.clear_session()
            gc.collect()
    rss, peak = memory_mb()  # finished trial processes; a warm worker reports its own peak
    peak = max(peak, peak_mb())
    result.rss_mb, result.peak_child_rss_mb = rss, peak if fresh else math.nan
    return result


def run_pack(cfg, overrides: list[str], parent, tags: dict[str, str]) -> list:
    """A packed job: each seed's FINISHED run under the parent is kept, the rest train as one pack.
    Never raises on a failure (as run_job): every seed left gets a FAILED JobResult with the reason."""
    from fashion_lab.record import tracking

    results, todo = {}, []
    for seed, own in zip(cfg.sweep.pack_seeds, packs.per_seed(overrides)):
        one = copy.deepcopy(cfg)
        with open_dict(one):
            one.trainer.seed, one.sweep.pack_seeds = int(seed), []
        label = sweep.point_name(own, cfg.sweep.swept_keys) or None
        results[seed] = JobResult(name=label, overrides=own)
        if done := _finished_before(one, parent, {}):
            print(f"{label or 'point'}: already recorded as run {done[-1].run_id}; not re-run")
            results[seed] = JobResult(status="FINISHED", name=label, overrides=own, **_recorded(one, done[-1]))
        else:
            todo.append((seed, one, own, label))
    if todo:
        print(f"fashion-lab: training seeds {[s for s, *_ in todo]} packed (sweep.pack={cfg.sweep.pack})", flush=True)
        try:
            _train_pack(todo, parent, tags, results)
        except Exception as error:  # noqa: BLE001 - a failing pack must not stop the other points
            if (stop := tracking.take_signal(error)) is not None:
                raise stop from error
            reason = tracking.failure_reason(error)[:2000]
            print(f"fashion-lab: pack of seeds {[s for s, *_ in todo]} FAILED: {reason.splitlines()[0]}", file=sys.stderr)
            for seed, *_ in todo:
                results[seed].reason = reason
    return list(results.values())


def _train_pack(todo: list, parent, tags: dict[str, str], results: dict) -> None:
    from fashion_lab.run.packed import train_packed
    from fashion_lab.run.train import print_result

    trained = train_packed([one for _, one, _, _ in todo], overrides=[own for *_, own, _ in todo],
                           run_names=[label for *_, label in todo], parent_run_id=parent, tags=tags)
    for (seed, _, _, _), result in zip(todo, trained):
        print_result(result)
        metrics = {k: float(v) for k, v in result.metrics.items()}
        history = result.history
        results[seed].status, results[seed].run_id, results[seed].metrics = "FINISHED", result.run_id, metrics
        results[seed].objectives = {"val_accuracy": metrics["best_val_accuracy"],
                                    "val_loss": float(history["val_loss"].min()),
                                    "last_val_accuracy": float(history["val_accuracy"].iloc[-1])}


def _set_job_threads(cfg, hydra_cfg) -> None:
    """A launcher's per-job thread share (joblib's n_jobs on 2 cores: 1 each), unless trainer.threads says."""
    if hydra_cfg is not None and cfg.trainer.threads is None and (threads := sweep.job_threads(hydra_cfg.launcher)):
        with open_dict(cfg):
            cfg.trainer.threads = threads  # applied before TF starts in this worker


def _finished_before(cfg, parent: Optional[str], trial: dict[str, str]) -> list:
    """This point's (or trial's) FINISHED runs already in the sweep: a resumed sweep skips them."""
    from fashion_lab.record import tracking

    if not (parent and cfg.tracking.enabled):
        return []
    return tracking.children(cfg.tracking, parent, run_key=config_hash(cfg, with_seed=True),
                             trial_id=trial.get("trial_id"), finished=True)


def _names(cfg, overrides: list[str], parent: Optional[str], trial: dict[str, str]) -> tuple:
    """(label, run name): "trial 3 b1r2" and "trial 3 b1r2 · parent8", or a point's swept values for both."""
    if not trial:
        label = point_name(overrides, cfg.sweep.swept_keys) or None
        return label, label
    label = f"trial {trial['trial_id']}" + (f" b{trial['bracket']}r{trial['round']}" if "bracket" in trial else "")
    return label, f"{label} · {(parent or 'local')[:8]}" + (
        f" x{trial['execution']}" if cfg.tuner.executions_per_trial > 1 else "")


def _tags(cfg, parent: Optional[str], trial: dict[str, str]) -> dict[str, str]:
    """A job's run tags: its trial's ids, and as a sweep's child, the sweep it belongs to."""
    from fashion_lab.record import tracking

    tags = {tracking.TAG + k: v for k, v in trial.items()}
    if parent:
        role, strategy = ("trial", cfg.tuner.strategy) if trial else ("point", "grid")
        tags.update(tracking.child_tags(parent, cfg.sweep.name or "multirun", role, strategy))
    return tags


def progress(cfg, parent: Optional[str], trial: dict[str, str], hydra_cfg) -> str:
    """"point 4 of 6, about 5 min left" (from the finished points' wall times, one point at a time),
    or "trial 3 of 20"; numbered from 1."""
    from fashion_lab.record import tracking

    if trial:
        n = int(trial["trial_id"]) + 1 if trial.get("trial_id", "").isdigit() else trial.get("trial_id")
        if cfg.tuner.strategy == "hyperband":
            return f"trial {n} (hyperband bracket {trial.get('bracket')}, round {trial.get('round')})"
        return f"trial {n} of {cfg.tuner.max_trials}"
    index = int(hydra_cfg.job.num) + 1 if hydra_cfg is not None and hydra_cfg.job.get("num") is not None else None
    if not parent or not cfg.tracking.enabled or index is None:
        return f"point {index}" if index else "point"
    tags = tracking.read_run(cfg.tracking, parent).tags
    total = int(tags.get(tracking.TAG + "runs_planned") or tags.get(tracking.TAG + "points") or index)
    most = int(tags.get(tracking.TAG + "runs_max") or total)
    text = f"point {index} of {max(total, index)}" + (f" (until sure: up to {most})" if most > total else "")
    done = [r.seconds for r in tracking.children(cfg.tracking, parent, finished=True) if r.seconds is not None]
    if done:
        left = sum(done) / len(done) * (max(total, index) - index + 1)
        text += f", about {max(1, round(left / 60))} min left" if left >= 60 else f", about {left:.0f} s left"
    return text
