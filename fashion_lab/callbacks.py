"""Hydra callback that makes every multirun a recorded sweep (registered in conf/config.yaml).

on_multirun_start (launching process, before any point): validate every point, create the
experiment and the parent run once, and leave the parent id where the points (also joblib
workers) find it. on_multirun_end: close the parent with a summary, print the table, exit
non-zero if a point failed. Hydra turns an Exception raised in a callback into a warning, so
errors leave through SystemExit (``commands.fail``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from fashion_lab import sweep


class SweepCallback(Callback):
    def __init__(self) -> None:
        self.record: dict[str, Any] = {}
        self.sweep_dir: Optional[Path] = None
        self.points: list[list[str]] = []

    # --- start ------------------------------------------------------------------------------

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from fashion_lab.commands import fail

        try:
            self._start(config)
        except SystemExit:
            raise
        except Exception as error:  # would otherwise be a warning and an unrecorded sweep
            fail(f"could not start the sweep: {type(error).__name__}: {error}")

    def _start(self, config: DictConfig) -> None:
        from hydra.core.global_hydra import GlobalHydra

        from fashion_lab.commands import fail
        from fashion_lab.config import ConfigError, validate

        name = config.sweep.name or "multirun"
        strategy = str(config.sweep.strategy)
        if strategy != "grid":
            fail(f"sweep {name!r} has sweep.strategy={strategy}: run it with `fashion-lab sweep {name}` "
                 f"(a KerasTuner search), or add sweep.strategy=grid to run its choices as a grid")
        loader = GlobalHydra.instance().config_loader()
        task = list(config.hydra.overrides.task)
        params = {str(k): str(v) for k, v in (config.hydra.sweeper.get("params") or {}).items()}
        try:
            dims = sweep.dimensions(params, task, loader)
            sweep.check_grid(dims, f"sweep {name!r}")
            self.points = sweep.points(dims)
        except ConfigError as error:
            fail(str(error))
        except Exception as error:
            fail(f"sweep {name!r}: {error}")
        keys = sweep.swept_keys(dims)
        if config.sweep.until_sure and "trainer.seed" not in keys:  # its sweeper adds the seeds round by round
            keys.append("trainer.seed")
        # `fashion-lab sweep` turns sweep.seeds into a trainer.seed dimension; a bare multirun cannot.
        if int(config.sweep.seeds) > 1 and "trainer.seed" not in keys and not config.sweep.until_sure:
            fail(f"sweep.seeds={config.sweep.seeds} is applied by `fashion-lab sweep {name}`; with train -m "
                 f"give the seeds as trainer.seed=0,1,2")
        # Every point composes and validates before the first one trains (BasicSweeper checks
        # composition batch by batch only, and never our ranges).
        for point in self.points:
            label = sweep.point_name(point, keys) or " ".join(point)
            try:
                validate(loader.load_sweep_config(config, list(point)))
            except ConfigError as error:
                fail(f"point {label}: {error}")
            except Exception as error:  # Hydra's message is generic; its cause names key and allowed values
                cause = f" ({str(error.__cause__).splitlines()[0]})" if error.__cause__ else ""
                fail(f"point {label}: {str(error).strip()}{cause}")

        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        tracking = config.tracking
        parent = None
        if tracking.enabled:
            from fashion_lab.tracking import TAG, open_parent_run

            definition = OmegaConf.to_yaml({"sweep": name, "strategy": "grid", "dimensions": {
                k: sweep.value_text(o) for k, o in dims.items()},
                "points": [sweep.point_name(p, keys) for p in self.points],
                "command": " ".join(["fashion-lab", "train", "-m", *task])})
            files = sweep.sweep_files()
            if config.sweep.name in files:  # the file as written, as comments so sweep.yaml stays one document
                text = files[config.sweep.name].read_text().splitlines()
                definition += f"# sweeps/{config.sweep.name}.yaml:\n" + "".join(f"#   {line}\n" for line in text)
            title = name if config.sweep.name else "grid " + " x ".join(sweep.short_key(k) for k in keys)
            parent = open_parent_run(tracking, name=title, role="sweep", strategy="grid", sweep_name=name,
                                     swept_keys=keys, definition=definition,
                                     tags={TAG + "points": str(len(self.points)),
                                           TAG + "overrides": " ".join(task)})
            print(f"fashion-lab: sweep {name}: {len(self.points)} points, parent run {parent} "
                  f"({tracking.uri}, experiment {tracking.experiment})", file=sys.stderr)
        self.record = {"parent_run_id": parent, "sweep_name": name, "swept_keys": keys,
                       "points": len(self.points)}
        path = self.sweep_dir / sweep.SWEEP_RECORD
        path.write_text(json.dumps(self.record, indent=1))
        os.environ[sweep.SWEEP_FILE_ENV] = str(path)  # inherited by joblib's worker processes

    # --- end --------------------------------------------------------------------------------

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(sweep.SWEEP_FILE_ENV, None)
        if self.sweep_dir is None:
            return
        try:
            failed = self._end(config)
        except SystemExit:
            raise
        except Exception as error:
            print(f"fashion-lab: error: could not summarise the sweep: {type(error).__name__}: {error}",
                  file=sys.stderr)
            raise SystemExit(1)
        if failed:
            raise SystemExit(1)

    def _children(self, config: DictConfig) -> list[dict[str, Any]]:
        """Points as recorded: MLflow children first, then point records with no run (failed early)."""
        from fashion_lab.tracking import TAG

        children: list[dict[str, Any]] = []
        parent = self.record.get("parent_run_id")
        if parent:
            from fashion_lab.tracking import client_for

            client = client_for(config.tracking)
            experiment = client.get_run(parent).info.experiment_id
            for run in client.search_runs([experiment], f"tags.mlflow.parentRunId = '{parent}'",
                                          max_results=10000):
                children.append({"name": run.info.run_name, "run_id": run.info.run_id,
                                 "status": run.info.status, "metrics": dict(run.data.metrics),
                                 "overrides": run.data.tags.get(TAG + "overrides", "").split(),
                                 "reason": run.data.tags.get(TAG + "failure")})
        seen = {c["name"] for c in children} | {c["run_id"] for c in children}
        for path in sorted(self.sweep_dir.glob(f"*/{sweep.POINT_RECORD}")):
            point = json.loads(path.read_text())
            if not parent or (point.get("run_id") not in seen and point.get("name") not in seen):
                children.append(point)
        return children

    def _end(self, config: DictConfig) -> int:
        keys = self.record.get("swept_keys", [])
        children = self._children(config)
        table = sweep.summary_table(children, keys)
        finished = int((table["status"] == "FINISHED").sum()) if len(table) else 0
        failed_rows = table[table["status"] != "FINISHED"] if len(table) else table
        total = max(len(self.points), len(table))  # sweep.until_sure adds points as it goes
        lost = max(0, len(self.points) - len(table))
        name = self.record.get("sweep_name")
        text = sweep.format_table(table) if len(table) else "(no points recorded)"
        print(f"\nsweep {name}: {finished} of {total} points finished"
              + (f", {len(failed_rows)} failed" if len(failed_rows) else "")
              + (f", {lost} lost" if lost else "") + "\n" + text)
        for _, row in failed_rows.iterrows():
            print(f"FAILED point {row['_name']}: {row['_reason'] or 'no reason recorded'}", file=sys.stderr)
        best = table[table["status"] == "FINISHED"].head(1) if len(table) else table
        summary: dict[str, Any] = {"points": total, "points_finished": finished,
                                   "points_failed": len(failed_rows) + lost}
        if len(best):
            row = best.iloc[0]
            summary.update(best_point=row["_name"], best_run_id=row["_run_id"],
                           best_val_accuracy=float(row["val_accuracy"]),
                           best_test_accuracy=float(row["test_accuracy"]))
        print("\n".join(answer(config, children, keys, self.record.get("parent_run_id"),
                                (row["_name"], float(row["val_accuracy"])) if len(best) else None)))
        if len(failed_rows):
            summary["failed_points"] = "; ".join(str(n) for n in failed_rows["_name"])
        parent = self.record.get("parent_run_id")
        if parent:
            from fashion_lab.tracking import client_for, close_parent_run

            client = client_for(config.tracking)
            client.log_text(parent, text + "\n", "summary.txt")
            status = "FINISHED" if summary["points_failed"] == 0 else "FAILED"
            close_parent_run(config.tracking, parent, status=status, summary=summary)
        return summary["points_failed"]


def answer(config: DictConfig, children: list, keys: list, parent: Optional[str], best) -> list[str]:
    """The sweep's answer with its budget (fashion_lab.report), or a line saying why there is none."""
    try:
        from fashion_lab.config import flatten
        from fashion_lab.report import sweep_end_lines

        defaults = flatten(OmegaConf.masked_copy(config, [k for k in config if k != "hydra"]))
        command = (f"fashion-lab report report.sweep={parent} tracking.uri={config.tracking.uri}"
                   if parent else None)
        lines = sweep_end_lines(children, keys, defaults, best, command)
        if parent:  # the runs table with the swept params and key metrics as columns (tracking.sweep_view)
            from fashion_lab.tracking import client_for

            experiment = client_for(config.tracking).get_run(parent).info.experiment_id
            lines.append(f"In the MLflow UI (fashion-lab ui): http://{config.ui.host}:{config.ui.port}/#/experiments/"
                         f"{experiment}/runs?viewStateShareKey={parent}")
        return lines
    except Exception as error:  # noqa: BLE001 - the sweep is recorded; the answer is a bonus
        return [f"(no answer: {type(error).__name__}: {error}; run fashion-lab report)"]
