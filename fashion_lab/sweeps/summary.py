"""The end of a grid sweep: the table of its points, the answer with its budget, what else each level changes."""

from __future__ import annotations

import math
from typing import Any, Optional

from omegaconf import DictConfig

from fashion_lab.analysis import race_record
from fashion_lab.config import flatten, override_key, short_key, without_hydra


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
        from fashion_lab.record.tracking import read_run, sweep_view_url

        defaults = flatten(without_hydra(config))
        command = f"fashion-lab report report.sweep={parent} tracking.uri={config.tracking.uri}"
        answered = [c for c in children if race_record.full_budget(c.get("tags") or {})]  # a raced arm's rung is no answer
        lines = sweep_end_lines(answered, keys, defaults, best, command, plan, also)
        lines += race_record.race_lines(children, keys, int(config.trainer.epochs)) or []
        # the runs table with the swept params and key metrics as columns (tracking.sweep_view)
        experiment = read_run(config.tracking, parent).experiment_id
        lines.append("In the MLflow UI (fashion-lab ui): " + sweep_view_url(config.ui.host, config.ui.port, experiment, parent))
        return lines
    except Exception as error:  # noqa: BLE001 - the sweep is recorded; the answer is a bonus
        return [f"(no answer: {type(error).__name__}: {error}; run fashion-lab report)"]


# --- the end-of-sweep table ------------------------------------------------------------------

def summary_table(children: list[dict[str, Any]], keys: list[str]):
    """One row per point: swept values, val_accuracy, test_accuracy, epochs, seconds, status (and a raced
    grid's rung, "1/3 stopped" where the race stopped the arm); best first."""
    import pandas as pd

    rows = []
    for child in children:
        values = {override_key(o): o.partition("=")[2] for o in child["overrides"]}
        m = child.get("metrics") or {}
        row = {short_key(k): values.get(k) for k in keys}
        row.update(val_accuracy=m.get("best_val_accuracy", math.nan), test_accuracy=m.get("test_accuracy", math.nan),
                   epochs=m.get("epochs_completed", math.nan), seconds=m.get("train_seconds", math.nan),
                   status=child.get("status"))
        race = child.get("tags") or {}  # a run's race tags, unprefixed (race_record.of)
        if race_record.RUNG in race:  # a raced arm has a run per rung: say which, and where the race stopped it
            row["rung"] = f"{race[race_record.RUNG]}/{race[race_record.RUNGS]}" + (
                " stopped" if race_record.STOPPED_AT_RUNG in race else "")
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
