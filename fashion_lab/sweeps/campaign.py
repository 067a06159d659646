"""The campaign layer: a sweep's parent run and its jobs, the same code for every sweeper.

``open_parent`` opens or resumes the parent (the same command continues it; ``sweep.restart=true``
starts anew), ``close_parent`` ends it, ``abort`` (Ctrl-C, SIGTERM) stops the workers and closes it
and its in-flight children KILLED. Each job is ``sweeps.job.run_job`` (a grid point or a trial,
on any launcher), which hands a ``JobResult`` back to the sweeper (Hydra's JobReturn).
``Campaign``, a Hydra callback (conf/config.yaml), records grid-like sweepers; the KerasTuner
sweeper uses the same functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from fashion_lab.sweeps import grid as sweep
from fashion_lab.config import (ConfigError, check_overrides, flatten, is_plumbing, is_setting,
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


def planned(config: DictConfig, points: list) -> dict[str, str]:
    """Tags for progress: the runs this sweep plans, and with sweep.until_sure the most it may run."""
    from fashion_lab.record.tracking import TAG

    if not config.sweep.until_sure:
        return {TAG + "runs_planned": str(len(points))}
    return {TAG + "runs_planned": str(len(points) * max(2, int(config.sweep.seeds))),
            TAG + "runs_max": str(len(points) * max(2, int(config.sweep.max_seeds)))}


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
        from fashion_lab.analysis.answers import sweep_end_lines
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
