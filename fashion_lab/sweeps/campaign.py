"""The campaign layer: a sweep's parent run and its jobs, the same code for every sweeper.

``open_parent`` opens or resumes the parent under a lease (the same command continues it; ``sweep.restart=true``
starts anew; one live command at a time), ``close_parent`` ends it, ``abort`` (Ctrl-C, SIGTERM) stops the workers
and closes it and its in-flight children KILLED. Each job is ``sweeps.job.run_job`` (a grid point or a trial, on any
launcher), which hands a ``JobResult`` back to the sweeper (Hydra's JobReturn). ``Campaign``, a Hydra callback
(conf/config.yaml), records grid-like sweepers; the search sweeper uses the same functions."""

from __future__ import annotations

import hashlib
import json
import signal
import sys
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write

from fashion_lab.analysis import race_record as race
from fashion_lab.sweeps import grid as sweep, pack as packs
from fashion_lab.config import (ConfigError, check_overrides, flatten, is_plumbing, is_setting,
                                override_key, point_name, short_key, sweep_files)
from fashion_lab.preflight import validate
from fashion_lab.record.store import check_store
from fashion_lab.runtime.processes import stop_workers, stop_workers_then_raise
from fashion_lab.sweeps.summary import answer, format_table, level_differences, summary_table

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


def fashion_labs_own(config, sweeper: str, command: str) -> None:
    """Any Hydra app can select fashion-lab's sweepers; only fashion-lab's train task has what they need."""
    from hydra.errors import CompactHydraException

    if config is None or not all(section in config for section in ("sweep", "tuner", "trainer")):
        raise CompactHydraException(f"hydra/sweeper={sweeper}: the {sweeper} sweeper runs fashion-lab's train "
                                    f"task only ({command}); this app's config has no sweep, tuner and trainer")


# --- the parent run ---------------------------------------------------------------------------

def open_parent(tracking_cfg, *, key: str, restart: bool, name: str, role: str, strategy: str,
                sweep_name: str, swept_keys: list[str], definition: str, tags: dict[str, str]) -> Optional[str]:
    """The parent run of this sweep command: the last one recorded under ``key``, resumed, or a new one, held
    under a lease (record/lease.py); while another live command holds it, ``Stop(Busy)`` before any change."""
    raise_on_sigterm()  # from before the parent exists: a SIGTERM while the lease settles closes it KILLED
    if not tracking_cfg.enabled:
        return None
    from fashion_lab.record import tracking

    tracking.reap(tracking_cfg)  # runs of a killed earlier attempt: KILLED before anything resumes

    def create(claim: dict[str, str]) -> str:  # open at once: a signal while the lease settles closes it (abort)
        run_id = tracking.open_parent_run(tracking_cfg, name=name, role=role, strategy=strategy, sweep_name=sweep_name,
                                          swept_keys=swept_keys, definition=definition, tags={**tags, **claim})
        _OPEN[run_id] = tracking_cfg
        return run_id

    try:
        parent, resumed, taken = tracking.hold_parent(tracking_cfg, key, f"{role} {sweep_name}", restart, create)
    except tracking.Busy as busy:  # a Stop passes Hydra's callback and sweeper alike (no abort: the loser's
        raise Stop(busy) from None  # parent is already closed and deleted)
    print("".join(f"taking over {role} {sweep_name}: the lease of {line}\n" for line in taken), end="")
    if resumed:
        tracking.resume_parent(tracking_cfg, parent, tags)
        print(f"resuming {role} {sweep_name} (parent run {parent}); sweep.restart=true starts a new one")
    _OPEN[parent] = tracking_cfg
    return parent


def close_parent(tracking_cfg, parent: Optional[str], status: str, summary: dict[str, Any], text: str = "") -> None:
    if parent:
        from fashion_lab.record import tracking

        tracking.close_parent_run(tracking_cfg, parent, status=status, summary=summary, text=text)
        _OPEN.pop(parent, None)


def raise_on_sigterm() -> None:
    """SIGTERM unwinds the sweep like Ctrl-C, so ``abort`` can close what it had open."""
    from fashion_lab.record.tracking import install_signal_handlers

    install_signal_handlers()
    signal.signal(signal.SIGTERM, stop_workers_then_raise)  # the workers close their own runs first


def abort(reason: str, status: str = "KILLED") -> None:
    """Ctrl-C or SIGTERM (or a crash, FAILED): stop the workers, close the open parents and their children."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second signal must not cut the clean-up short
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop_workers()
    from fashion_lab.record import tracking

    for parent, tracking_cfg in list(_OPEN.items()):
        tracking.reap(tracking_cfg)
        tracking.tag_run(tracking_cfg, parent, {tracking.TAG + "failure": reason})
        close_parent(tracking_cfg, parent, status, {})


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
            if config.sweep.until_sure:  # its sweeper runs the seeds (a swept trainer.seed is its first round)
                dims.pop("trainer.seed", None)
            sweep.check_grid(dims, f"sweep {self.name!r}")
            self.points = sweep.points(dims)
        except Exception as error:  # Hydra's grammar errors name the bad override
            raise error if isinstance(error, ConfigError) else SweepError(f"sweep {self.name!r}: {error}") from None
        self.points, self.keys = packs.expand(self.points, sweep.swept_keys(dims), config)  # sweep.pack: per seed
        if config.sweep.until_sure and "trainer.seed" not in self.keys:  # its sweeper adds seeds round by round
            self.keys.append("trainer.seed")
        # `fashion-lab sweep` turns sweep.seeds into a trainer.seed dimension; a bare multirun cannot.
        if int(config.sweep.seeds) > 1 and "trainer.seed" not in self.keys and not config.sweep.until_sure:
            raise ConfigError(f"sweep.seeds={config.sweep.seeds} is applied by `fashion-lab sweep {self.name}`; "
                              f"with train -m give the seeds as trainer.seed=0,1,2")
        sweep.check_sweeper(config, self.name)
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
            tags={TAG + "points": str(len(self.points)), TAG + "overrides": " ".join(task), **sweep.planned(config, self.points)})
        if self.parent:
            print(f"fashion-lab: sweep {self.name}: {len(self.points)} points, parent run {self.parent} "
                  f"({config.tracking.uri}, experiment {config.tracking.experiment})", file=sys.stderr)
        with read_write(config.hydra.overrides):  # every job learns its parent from its own overrides
            config.hydra.overrides.task.append(f"sweep.swept_keys=[{','.join(repr(k) for k in self.keys)}]")
            if self.parent:
                config.hydra.overrides.task.append(f"sweep.parent_run_id={self.parent}")
        raise_on_sigterm()  # again: what ran since (the store, Hydra) may have set its own handler
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
            raise Stop(SweepFailed(self.failure_line(config, failed)))

    def failure_line(self, config: DictConfig, failed_runs: int) -> str:
        """'1 of 4 points failed'; with sweep.until_sure (seeds per point): '1 of 2 points failed (2 of 4 runs)'."""
        if not config.sweep.until_sure:
            return f"{failed_runs} of {len(self.points)} points failed"
        keys = [k for k in self.keys if k != "trainer.seed"]
        children = self._children(config)
        cells = {tuple(dict(o.split("=", 1) for o in c["overrides"] if "=" in o).get(k) for k in keys)
                 for c in children if c["status"] != "FINISHED"}
        lost = max(0, len(self.points) - len(children))
        return (f"{len(cells) or failed_runs} of {len(self.points)} points failed "
                f"({failed_runs} of {max(len(children), failed_runs + lost)} runs)")

    def _children(self, config: DictConfig) -> list[dict[str, Any]]:
        """One row per point as recorded: its FINISHED run if any, else its latest."""
        from fashion_lab.record import tracking

        latest: dict[str, dict[str, Any]] = {}
        for run in tracking.children(config.tracking, self.parent):
            key = run.tag("run_key") or run.run_id
            if latest.get(key, {}).get("status") != "FINISHED":
                latest[key] = {"name": run.name, "run_id": run.run_id, "status": run.status,
                               "metrics": dict(run.metrics), "reason": run.tag("failure"), "seconds": run.seconds,
                               "overrides": run.tag("overrides", "").split(), "tags": race.of(run.tags)}
        return list(latest.values())

    def command(self, config: DictConfig) -> str:
        """This sweep's command without its seeds: where the next step's settings go."""
        task = [o for o in config.hydra.overrides.task if not is_plumbing(override_key(o))
                and override_key(o) not in ("trainer.seed", "hydra/sweeper", "sweep", "sweep.until_sure", "sweep.race",
                                            "sweep.seeds", "sweep.max_seeds", "sweep.pack", packs.KEY)]
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
            reason = row["_reason"] if isinstance(row["_reason"], str) and row["_reason"] else "no reason in the store"
            print(f"FAILED point {row['_name']}: {reason}", file=sys.stderr)
        summary: dict[str, Any] = {"points": total, "points_finished": finished,
                                   "points_failed": len(failed_rows) + lost}
        full = {c["run_id"] for c in children if race.full_budget(c["tags"])}  # a raced arm's rung is no answer
        best = table[(table["status"] == "FINISHED") & table["_run_id"].isin(full)].head(1) if len(table) else table
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

        close_parent(config.tracking, self.parent, "FINISHED" if summary["points_failed"] == 0 else "FAILED", summary,
                     text + "\n")
        return summary["points_failed"]
