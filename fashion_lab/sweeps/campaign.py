"""The campaign layer: a sweep's parent run and its jobs, the same code for every sweeper.

``open_parent`` opens or resumes the parent (the same command continues it; ``sweep.restart=true``
starts anew), ``close_parent`` ends it, ``abort`` (Ctrl-C, SIGTERM) stops the workers and closes it
and its in-flight children KILLED. ``run_job`` is every job, a grid point or a trial on any
launcher: it skips a point already FINISHED under the parent (same config and seed), else trains
it, and returns the result to the sweeper (Hydra's JobReturn). The parent id and the trial reach
the job in its overrides (``sweep.parent_run_id``, ``sweep.trial``), so it needs nothing else.
``Campaign``, a Hydra callback (conf/config.yaml), records grid-like sweepers; the KerasTuner
sweeper uses the same functions.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import math
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from fashion_lab.sweeps import grid as sweep
from fashion_lab.config import (ConfigError, check_overrides, config_hash, flatten, is_plumbing, is_setting,
                                override_key, point_name, short_key, sweep_files)
from fashion_lab.preflight import validate
from fashion_lab.record.store import check_store

_OPEN: dict[str, Any] = {}  # parent run id -> tracking config, for abort()


class SweepError(Exception):
    """A sweep can't start (bad points, a search file run as a grid); the message says why."""


class SweepFailed(Exception):
    """Some points or trials failed, or a search stopped early; the summary has been printed."""


class Stop(BaseException):
    """Carries a typed error out of Hydra, which turns an Exception in a callback into a warning
    and one in a sweeper into a traceback; the command layer unwraps it."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


# --- the parent run ---------------------------------------------------------------------------

def open_parent(tracking_cfg, *, key: str, restart: bool, name: str, role: str, strategy: str,
                sweep_name: str, swept_keys: list[str], definition: str, tags: dict[str, str]) -> Optional[str]:
    """The parent run of this sweep command: the last one recorded under ``key``, resumed, or a new one."""
    if not tracking_cfg.enabled:
        return None
    from fashion_lab.record import tracking

    tracking.reap(tracking_cfg)  # runs of a killed earlier attempt: KILLED before anything resumes
    found = None if restart else tracking.find_parent(tracking_cfg, key)
    if found is not None:
        parent = found.info.run_id
        tracking.resume_parent(tracking_cfg, parent, tags)
        print(f"resuming {role} {sweep_name} (parent run {parent}); sweep.restart=true starts a new one")
    else:
        parent = tracking.open_parent_run(tracking_cfg, name=name, role=role, strategy=strategy,
                                          sweep_name=sweep_name, swept_keys=swept_keys, definition=definition,
                                          tags={**tags, tracking.TAG + "campaign_key": key})
    _OPEN[parent] = tracking_cfg
    return parent


def close_parent(tracking_cfg, parent: Optional[str], status: str, summary: dict[str, Any]) -> None:
    if parent:
        from fashion_lab.record import tracking

        tracking.close_parent_run(tracking_cfg, parent, status=status, summary=summary)
        _OPEN.pop(parent, None)


def raise_on_sigterm() -> None:
    """SIGTERM unwinds the sweep like Ctrl-C, so ``abort`` can close what it had open."""
    from fashion_lab.record.tracking import install_signal_handlers

    install_signal_handlers()


def _descendants() -> list[int]:
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_workers(grace_s: float = 20.0) -> None:
    """SIGTERM every process this one started (launcher workers, trial processes), once: each closes
    its run KILLED; whatever is still alive after ``grace_s`` is killed (its run is then reaped KILLED)."""
    deadline, signalled = time.monotonic() + grace_s, set()
    while (pids := _descendants()) and time.monotonic() < deadline + 5:
        for pid in pids:
            if pid not in signalled or time.monotonic() > deadline:
                signalled.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL)
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:  # our own children: collect them, not leave zombies
                pass


def abort(reason: str, status: str = "KILLED") -> None:
    """Ctrl-C or SIGTERM (or a crash, FAILED): stop the workers, close the open parents and their children."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_workers()
    from fashion_lab.record import tracking

    for parent, tracking_cfg in list(_OPEN.items()):
        tracking.reap(tracking_cfg)
        tracking.set_tags(tracking.client_for(tracking_cfg), parent, {tracking.TAG + "failure": reason})
        close_parent(tracking_cfg, parent, status, {})


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
        elif (stopped := int(run.data.metrics.get("epochs_completed", 0))) >= cfg.trainer.epochs:
            reason = f"run {run.info.run_id} already trained {stopped} epochs, this round's budget is {cfg.trainer.epochs}"
        else:
            weights = tracking.download_weights(cfg.tracking, run.info.run_id, folder)
            return WarmStart(weights, stopped, run.info.run_id), {}
    except Exception as error:  # noqa: BLE001 - a round that cannot continue still trains
        reason = f"could not take trial {earlier}'s weights from the record: {type(error).__name__}: {error}"
    reason = reason.splitlines()[0][:500]
    print(f"fashion-lab: trial {trial.get('trial_id')} trains from scratch: {reason}", file=sys.stderr)
    return None, {tracking.TAG + "from_scratch": reason}


def _train(cfg, overrides: list[str], name: Optional[str], parent: Optional[str], tags: dict[str, str],
           trial: Optional[dict[str, str]] = None) -> dict:
    """train() and what a sweeper needs of it (it crosses processes, so plain data only). Each job
    loads its data (from the verified array cache: a fraction of a second)."""
    from fashion_lab.run.train import print_result, train

    with tempfile.TemporaryDirectory(prefix="fashion-lab-round-") as folder:
        start, start_tags = round_start(cfg, parent, trial or {}, Path(folder))
        result = train(cfg, overrides=overrides, run_name=name, parent_run_id=parent, tags={**tags, **start_tags},
                       start=start)
    print_result(result)
    metrics = {k: float(v) for k, v in result.metrics.items()}
    return {"run_id": result.run_id, "metrics": metrics,
            "objectives": {"val_accuracy": metrics["best_val_accuracy"],
                           "val_loss": float(result.history["val_loss"].min())}}


def _recorded(cfg, run) -> dict[str, Any]:
    from fashion_lab.record import tracking

    metrics = dict(run.data.metrics)
    return {"run_id": run.info.run_id, "metrics": metrics,
            "objectives": {"val_accuracy": metrics.get("best_val_accuracy", math.nan),
                           "val_loss": tracking.min_metric(cfg.tracking, run.info.run_id, "val_loss")}}


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One multirun job: ``train(cfg)`` as a child of the sweep's parent run. Never raises on failure:
    a raising job would stop Hydra's sweepers; the run is FAILED with its reason, the result says so."""
    from hydra.core.hydra_config import HydraConfig

    from fashion_lab.record import tracking
    from fashion_lab.runtime.fresh_process import memory_mb
    from fashion_lab.runtime.warm_worker import call_in_warm_worker, peak_mb

    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    overrides = [o for o in (hydra_cfg.overrides.task if hydra_cfg else []) if not is_plumbing(override_key(o))]
    parent, trial = cfg.sweep.parent_run_id, {k: str(v) for k, v in (cfg.sweep.trial or {}).items()}
    if trial:
        label = f"trial {trial['trial_id']}" + (f" b{trial['bracket']}r{trial['round']}" if "bracket" in trial else "")
        name = f"{label} · {(parent or 'local')[:8]}" + (
            f" x{trial['execution']}" if cfg.tuner.executions_per_trial > 1 else "")
        role, strategy = "trial", cfg.tuner.strategy
    else:
        label = name = point_name(overrides, cfg.sweep.swept_keys) or None
        role, strategy = "point", "grid"
    if hydra_cfg is not None and cfg.trainer.threads is None and (threads := sweep.job_threads(hydra_cfg.launcher)):
        with open_dict(cfg):
            cfg.trainer.threads = threads  # applied before TF starts in this worker
    fresh = bool(trial) and cfg.tuner.fresh_process  # a long search's memory stays flat on any launcher
    result: dict[str, Any] = {"name": label, "overrides": overrides, "trial": trial, "status": "FAILED",
                              "reason": None, "run_id": None, "metrics": {}}
    try:  # train() validates the point (a bad one fails as a FAILED run, like any other error)
        done = (tracking.children(cfg.tracking, parent, run_key=config_hash(cfg, with_seed=True),
                                  trial_id=trial.get("trial_id"), finished=True)
                if parent and cfg.tracking.enabled else [])
        if done:
            print(f"{label or 'point'}: already recorded as run {done[-1].info.run_id}; not re-run")
            fresh = False
            result.update(status="FINISHED", **_recorded(cfg, done[-1]))
        else:
            with contextlib.suppress(Exception):  # progress is a courtesy: never a reason to fail a point
                print(progress(cfg, parent, trial, hydra_cfg), flush=True)
            tags = {tracking.TAG + k: v for k, v in trial.items()}
            if parent:
                tags.update(tracking.child_tags(parent, cfg.sweep.name or "multirun", role, strategy))
            job = dict(cfg=cfg, overrides=overrides, name=name, parent=parent, tags=tags, trial=trial)
            # A worker keeps the thread count and op determinism of its first trial: part of its key.
            worker = dict(trials_per_worker=cfg.tuner.trials_per_worker,
                          key=(cfg.trainer.threads, cfg.trainer.deterministic))
            result.update(status="FINISHED", **(call_in_warm_worker(_train, **worker, **job) if fresh
                                               else _train(**job)))
        if (stop := tracking.take_signal()) is not None:  # a signal a library swallowed: stop after this point
            raise stop
    except Exception as error:  # noqa: BLE001 - a failing point must not stop the others
        if (stop := tracking.take_signal(error)) is not None:  # Ctrl-C or SIGTERM, re-wrapped by a library
            raise stop from error
        result["reason"] = tracking.failure_reason(error)[:2000]
        print(f"fashion-lab: {label or 'point'} FAILED: {result['reason'].splitlines()[0]}", file=sys.stderr)
        if not isinstance(error, ConfigError) and type(error).__name__ != "TrainingDiverged":
            traceback.print_exc()
    finally:
        if trial and not fresh and "keras" in sys.modules:  # frees the model; TF keeps ~16 MB of graphs anyway
            sys.modules["keras"].backend.clear_session()
            gc.collect()
    rss, peak = memory_mb()  # finished trial processes; a warm worker reports its own peak
    peak = max(peak, peak_mb())
    result.update(rss_mb=rss, peak_child_rss_mb=peak if fresh else math.nan)
    return result


def planned(config: DictConfig, points: list) -> dict[str, str]:
    """Tags for progress: the runs this sweep plans, and with sweep.until_sure the most it may run."""
    from fashion_lab.record.tracking import TAG

    if not config.sweep.until_sure:
        return {TAG + "runs_planned": str(len(points))}
    return {TAG + "runs_planned": str(len(points) * max(2, int(config.sweep.seeds))),
            TAG + "runs_max": str(len(points) * max(2, int(config.sweep.max_seeds)))}


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
    tags = tracking.client_for(cfg.tracking).get_run(parent).data.tags
    total = int(tags.get(tracking.TAG + "runs_planned") or tags.get(tracking.TAG + "points") or index)
    most = int(tags.get(tracking.TAG + "runs_max") or total)
    text = f"point {index} of {max(total, index)}" + (f" (until sure: up to {most})" if most > total else "")
    done = [(r.info.end_time - r.info.start_time) / 1000 for r in tracking.children(cfg.tracking, parent, finished=True)
            if r.info.end_time and r.info.start_time]
    if done:
        left = sum(done) / len(done) * (max(total, index) - index + 1)
        text += f", about {max(1, round(left / 60))} min left" if left >= 60 else f", about {left:.0f} s left"
    return text


# --- grid sweeps: Hydra's basic sweeper, or any grid-like one ---------------------------------

class Campaign(Callback):
    """Every multirun of a grid-like sweeper is a recorded sweep: one parent run, a child per point."""

    def __init__(self) -> None:
        self.parent: Optional[str] = None
        self.points: list[list[str]] = []
        self.keys: list[str] = []
        self.name = "multirun"
        self.started = False
        self.composed: dict[tuple, dict] = {}  # each point's composed config, flattened (what else a level changes)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if "kerastuner" in str(OmegaConf.select(config, "hydra.sweeper._target_", default="")).lower():
            return  # the KerasTuner sweeper runs its own campaign
        try:
            self._start(config)
        except Exception as error:  # noqa: BLE001 - else a warning, and an unrecorded sweep
            raise Stop(error if isinstance(error, (ConfigError, SweepError)) else
                       SweepError(f"could not start the sweep: {type(error).__name__}: {error}")) from error

    def _points(self, config: DictConfig, task: list[str]) -> dict:
        """Every point composes and validates before the first one trains (BasicSweeper checks
        composition batch by batch only, and never our ranges)."""
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().config_loader()
        params = {str(k): str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
        try:
            check_overrides(f"{k}={v}" for k, v in params.items())  # the sweep file's keys, like the command line's
            dims = sweep.dimensions(params, task, loader)
            sweep.check_grid(dims, f"sweep {self.name!r}")
            self.points = sweep.points(dims)
        except Exception as error:  # Hydra's grammar errors name the bad override
            raise error if isinstance(error, ConfigError) else SweepError(f"sweep {self.name!r}: {error}") from None
        self.keys = sweep.swept_keys(dims)
        if config.sweep.until_sure and "trainer.seed" not in self.keys:  # its sweeper adds seeds round by round
            self.keys.append("trainer.seed")
        # `fashion-lab sweep` turns sweep.seeds into a trainer.seed dimension; a bare multirun cannot.
        if int(config.sweep.seeds) > 1 and "trainer.seed" not in self.keys and not config.sweep.until_sure:
            raise ConfigError(f"sweep.seeds={config.sweep.seeds} is applied by `fashion-lab sweep {self.name}`; "
                              f"with train -m give the seeds as trainer.seed=0,1,2")
        self.composed = {}
        for point in self.points:
            label = point_name(point, self.keys) or " ".join(point)
            try:
                composed = loader.load_sweep_config(config, list(point))
                validate(composed)
                self.composed[tuple(point)] = flatten(OmegaConf.masked_copy(composed, [
                    k for k in composed if k not in ("hydra", "sweep")]))
            except ConfigError as error:
                raise ConfigError(f"point {label}: {error}") from None
            except Exception as error:  # Hydra's message is generic; its cause names key and allowed values
                cause = f" ({str(error.__cause__).splitlines()[0]})" if error.__cause__ else ""
                raise SweepError(f"point {label}: {str(error).strip()}{cause}") from None
        return dims

    def _start(self, config: DictConfig) -> None:
        from fashion_lab.record.tracking import TAG

        self.name = config.sweep.name or "multirun"
        if str(config.sweep.strategy) != "grid":
            raise SweepError(f"sweep {self.name!r} has sweep.strategy={config.sweep.strategy}: run it with "
                             f"`fashion-lab sweep {self.name}` (a KerasTuner search), or add sweep.strategy=grid "
                             "to run its choices as a grid")
        task = [o for o in config.hydra.overrides.task if not is_plumbing(override_key(o))]
        dims = self._points(config, task)
        definition = OmegaConf.to_yaml({"sweep": self.name, "strategy": "grid", "dimensions": {
            k: sweep.value_text(o) for k, o in dims.items()}, "points": [point_name(p, self.keys) for p in self.points],
            "command": " ".join(["fashion-lab", "train", "-m", *task])})
        if config.sweep.name in sweep_files():  # the file as written, as comments: sweep.yaml stays one document
            text = sweep_files()[config.sweep.name].read_text().splitlines()
            definition += f"# sweeps/{config.sweep.name}.yaml:\n" + "".join(f"#   {line}\n" for line in text)
        identity = ["grid", self.name, {k: sweep.value_text(o) for k, o in dims.items()},
                    sorted(o for o in task if not is_setting(override_key(o)))]  # this command's sweep
        check_store(config.tracking)  # before any point loads data or a parent run exists
        self.parent = open_parent(
            config.tracking, key=hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16],
            restart=bool(config.sweep.restart),
            name=self.name if config.sweep.name else "grid " + " x ".join(short_key(k) for k in self.keys),
            role="sweep", strategy="grid", sweep_name=self.name, swept_keys=self.keys, definition=definition,
            tags={TAG + "points": str(len(self.points)), TAG + "overrides": " ".join(task), **planned(config, self.points)})
        if self.parent:
            print(f"fashion-lab: sweep {self.name}: {len(self.points)} points, parent run {self.parent} "
                  f"({config.tracking.uri}, experiment {config.tracking.experiment})", file=sys.stderr)
        with read_write(config.hydra.overrides):  # every job learns its parent from its own overrides
            config.hydra.overrides.task.append(f"sweep.swept_keys=[{','.join(repr(k) for k in self.keys)}]")
            if self.parent:
                config.hydra.overrides.task.append(f"sweep.parent_run_id={self.parent}")
        raise_on_sigterm()
        self.started = True

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.started:
            return
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            failed = self._end(config)
        except Exception as error:  # noqa: BLE001
            raise Stop(SweepFailed(f"could not summarise the sweep: {type(error).__name__}: {error}")) from error
        if failed:
            raise Stop(SweepFailed(f"{failed} of {len(self.points)} points failed"))

    def _children(self, config: DictConfig) -> list[dict[str, Any]]:
        """One row per point as recorded: its FINISHED run if any, else its latest."""
        from fashion_lab.record import tracking

        latest: dict[str, dict[str, Any]] = {}
        for run in tracking.children(config.tracking, self.parent):
            tags = run.data.tags
            key = tags.get(tracking.TAG + "run_key") or run.info.run_id
            if latest.get(key, {}).get("status") != "FINISHED":
                latest[key] = {"name": run.info.run_name, "run_id": run.info.run_id, "status": run.info.status,
                               "metrics": dict(run.data.metrics), "reason": tags.get(tracking.TAG + "failure"),
                               "seconds": ((run.info.end_time - run.info.start_time) / 1000
                                           if run.info.end_time and run.info.start_time else None),
                               "overrides": tags.get(tracking.TAG + "overrides", "").split()}
        return list(latest.values())

    def command(self, config: DictConfig) -> str:
        """This sweep's command without its seeds: where the next step's settings go."""
        task = [o for o in config.hydra.overrides.task if not is_plumbing(override_key(o))
                and override_key(o) not in ("trainer.seed", "hydra/sweeper", "sweep", "sweep.until_sure",
                                            "sweep.seeds", "sweep.max_seeds")]
        if config.sweep.name in sweep_files():
            return " ".join([f"fashion-lab sweep {self.name}", *[o for o in task if o != f"sweep={self.name}"]])
        return " ".join(["fashion-lab train -m", *task])

    def _end(self, config: DictConfig) -> int:
        if not self.parent:  # tracking=none: the points printed their results, nothing was recorded
            print(f"\nsweep {self.name}: {len(self.points)} points run, not recorded (tracking.enabled=false)")
            return 0
        children = self._children(config)
        table = summary_table(children, self.keys)
        finished = int((table["status"] == "FINISHED").sum()) if len(table) else 0
        failed_rows = table[table["status"] != "FINISHED"] if len(table) else table
        total = max(len(self.points), len(table))  # sweep.until_sure adds points as it goes
        lost = max(0, len(self.points) - len(table))
        text = format_table(table) if len(table) else "(no points recorded)"
        print(f"\nsweep {self.name}: {finished} of {total} points finished"
              + (f", {len(failed_rows)} failed" if len(failed_rows) else "")
              + (f", {lost} lost" if lost else "") + "\n" + text)
        for _, row in failed_rows.iterrows():
            print(f"FAILED point {row['_name']}: {row['_reason'] or 'no reason recorded'}", file=sys.stderr)
        summary: dict[str, Any] = {"points": total, "points_finished": finished,
                                   "points_failed": len(failed_rows) + lost}
        best = table[table["status"] == "FINISHED"].head(1) if len(table) else table
        if len(best):
            row = best.iloc[0]
            summary.update(best_point=row["_name"], best_run_id=row["_run_id"],
                           best_val_accuracy=float(row["val_accuracy"]), best_test_accuracy=float(row["test_accuracy"]))
        print("\n".join(answer(config, children, self.keys, self.parent,
                                (row["_name"], float(row["val_accuracy"])) if len(best) else None,
                                plan={"command": self.command(config), "resumes": bool(config.sweep.until_sure),
                                      "until_sure": "sweep.until_sure=true" if config.sweep.name in sweep_files()
                                      else "hydra/sweeper=until_sure sweep.until_sure=true"},
                                also=level_differences(self.composed, self.keys))))
        if len(failed_rows):
            summary["failed_points"] = "; ".join(str(n) for n in failed_rows["_name"])
        from fashion_lab.record import tracking

        tracking.client_for(config.tracking).log_text(self.parent, text + "\n", "summary.txt")
        close_parent(config.tracking, self.parent, "FINISHED" if summary["points_failed"] == 0 else "FAILED", summary)
        return summary["points_failed"]


def level_differences(composed: dict[tuple, dict], keys: list[str]) -> dict:
    """(factor, level, other level) -> {key: (value at level, value at the other)}: every key of the composed
    configs, besides the factor itself, that differs between two points differing only in that factor."""
    out: dict = {}
    for point, flat in composed.items():
        values = dict(o.split("=", 1) for o in point)
        for other, other_flat in composed.items():
            theirs = dict(o.split("=", 1) for o in other)
            changed = [k for k in keys if k in values and values[k] != theirs.get(k)]
            if len(changed) != 1 or (changed[0], values[changed[0]], theirs[changed[0]]) in out:
                continue
            factor = changed[0]
            label = (factor, f"{factor}.name")  # a group's label is its name key
            out[(factor, values[factor], theirs[factor])] = {
                k: (flat.get(k, "not set"), other_flat.get(k, "not set")) for k in sorted({*flat, *other_flat})
                if k not in label and flat.get(k, "not set") != other_flat.get(k, "not set")}
    return out


def answer(config: DictConfig, children: list, keys: list, parent: Optional[str], best,
           plan: Optional[dict] = None, also: Optional[dict] = None) -> list[str]:
    """The sweep's answer with its budget (fashion_lab.report.build), or a line saying why there is none."""
    try:
        from fashion_lab.report.build import sweep_end_lines
        from fashion_lab.record.tracking import client_for, sweep_view_url

        defaults = flatten(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]))
        command = f"fashion-lab report report.sweep={parent} tracking.uri={config.tracking.uri}"
        lines = sweep_end_lines(children, keys, defaults, best, command, plan, also)
        # the runs table with the swept params and key metrics as columns (tracking.sweep_view)
        experiment = client_for(config.tracking).get_run(parent).info.experiment_id
        lines.append("In the MLflow UI (fashion-lab ui): " + sweep_view_url(config.ui.host, config.ui.port, experiment, parent))
        return lines
    except Exception as error:  # noqa: BLE001 - the sweep is recorded; the answer is a bonus
        return [f"(no answer: {type(error).__name__}: {error}; run fashion-lab report)"]


# --- the end-of-sweep table ------------------------------------------------------------------

def summary_table(children: list[dict[str, Any]], keys: list[str]):
    """One row per point: swept values, val_accuracy, test_accuracy, epochs, seconds, status; best first."""
    import pandas as pd

    rows = []
    for child in children:
        values = {override_key(o): o.partition("=")[2] for o in child["overrides"]}
        m = child.get("metrics") or {}
        row = {short_key(k): values.get(k) for k in keys}
        row.update(val_accuracy=m.get("best_val_accuracy", math.nan), test_accuracy=m.get("test_accuracy", math.nan),
                   epochs=m.get("epochs_completed", math.nan), seconds=m.get("train_seconds", math.nan),
                   status=child.get("status"))
        row["_name"], row["_reason"], row["_run_id"] = child.get("name"), child.get("reason"), child.get("run_id")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["epochs"] = frame["epochs"].astype("Int64") if frame["epochs"].notna().any() else frame["epochs"]
    return frame.sort_values(["val_accuracy", "test_accuracy"], ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


def format_table(frame) -> str:
    shown = frame[[c for c in frame.columns if not c.startswith("_")]]
    formats = {"val_accuracy": "{:.4f}".format, "test_accuracy": "{:.4f}".format, "seconds": "{:.1f}".format}
    return shown.to_string(index=False, na_rep="-", formatters={
        k: (lambda f: lambda v: "-" if v != v else f(v))(f) for k, f in formats.items() if k in shown})
