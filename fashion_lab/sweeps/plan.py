"""``fashion-lab sweep NAME sweep.plan=true``: the plan before the spend. Trains nothing, creates no run.

It states the runs, epochs and images the sweep will train; its expected wall time here, calibrated from
finished runs of the same shape in the store (seconds per image-epoch) or else from a few timed training steps
of the sweep's own network in a fresh process; what the design can detect (80 % power) from the seed spread of
comparable finished runs, or the pilot that would measure it; and the seeds per level a +-0.5 pt effect needs
(analysis.power's statistics; record.evidence reads the store; sweeps.race_plan adds a race's range)."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd
from omegaconf import OmegaConf

from fashion_lab.analysis import power
from fashion_lab.config import ConfigError, compose, flatten, typed
from fashion_lab.sweeps import grid, race_plan

TARGET = 0.005            # the effect the seeds-needed line is for: +-0.5 pt
START_S = 15.0            # a sweep's own start (Python, TensorFlow, Hydra, the parent run) where not measured
RECORD_S = 2.0            # recording one run (metrics, plots, weights) where not measured
SHAPE = ("model.", "data.name", "trainer.batch_size", "trainer.precision", "trainer.jit_compile",
         "trainer.threads", "optimizer.name")


@dataclass
class Cell:
    """One grid cell (a point without its seed), composed: what it trains and how long one run takes."""
    overrides: list[str]
    flat: dict
    epochs: int
    images: tuple[int, int, int]        # train, validation, test
    run_s: float = math.nan
    source: str = ""
    label: str = ""

    def shape(self) -> dict:
        return {k: str(v) for k, v in self.flat.items() if k.startswith(SHAPE)}


@dataclass
class Design:
    name: str
    keys: list[str]                     # the swept factors (no seed)
    levels: dict                        # factor -> its levels, as written
    cells: list[Cell]
    seeds: tuple[int, int]              # per cell: planned, most (until_sure)
    jobs: int = 1                       # parallel jobs of the launcher
    fixed: list[str] = field(default_factory=list)
    start_s: float = START_S
    start_source: str = "assumed"
    store: tuple[str, str] = ("", "")  # tracking.uri, tracking.experiment


def _seed_count(override) -> int:
    return len(list(override.sweep_string_iterator())) if override.is_sweep_override() else 1


def design(name: str, path: Path, overrides: list[str]) -> Design:
    """The sweep's cells (composed and validated), seeds and launcher, as `fashion-lab sweep` would run them."""
    from fashion_lab.preflight import validate

    until_sure = grid.setting(path, overrides, "sweep.until_sure", False).lower() == "true"
    seeded = overrides if until_sure else grid.with_seeds(path, overrides)
    dims = grid.dimensions(grid._params(OmegaConf.load(path)), seeded)
    grid.check_grid(dims, f"sweep {name!r}")
    seed_dim = dims.pop("trainer.seed", None)
    seeds = _seed_count(seed_dim) if seed_dim is not None else 1
    if until_sure:
        seeds = max(2, int(grid.setting(path, overrides, "sweep.seeds", 1)))
        most = max(seeds, int(grid.setting(path, overrides, "sweep.max_seeds", 10)))
    hydra_args = [o for o in overrides if o.startswith("hydra")]
    cells, keys = [], grid.swept_keys(dims)
    for point in grid.points(dims):
        cfg = compose([f"sweep={name}", *point])
        validate(cfg)
        cells.append(Cell(list(point), flatten(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "sweep"])),
                          int(cfg.trainer.epochs), images(cfg.data), label=grid.point_name(point, keys)))
    launcher = compose([f"sweep={name}", *hydra_args], return_hydra_config=True).hydra.launcher
    fixed = [o for o in overrides if not o.startswith(("hydra", "sweep.")) and o.split("=", 1)[0].lstrip("+~")
             not in ("trainer.seed", "trainer.epochs", *grid.swept_keys(dims))]  # the pilot sets its own
    return Design(name, keys, {k: list(dims[k].sweep_string_iterator()) for k in keys}, cells,
                  (seeds, most if until_sure else seeds), jobs(launcher), fixed,
                  store=(str(cfg.tracking.uri), str(cfg.tracking.experiment)))


def images(data) -> tuple[int, int, int]:
    """Training, validation and test images of a composed ``data`` node (as data/splits.py draws them)."""
    synthetic = str(data.name) in ("synthetic", "DataName.synthetic")
    pool = int(data.synthetic_train) if synthetic else 60000
    val = int(data.val_samples)
    train = int(data.train_samples) if data.train_samples else pool - val
    return train, val, int(data.synthetic_test) if synthetic else 10000


def jobs(launcher) -> int:
    target = str(OmegaConf.select(launcher, "_target_", default="") or "")
    if "joblib" not in target.lower():
        return 1
    cores = len(os.sched_getaffinity(0))
    n = int(OmegaConf.select(launcher, "n_jobs", default=-1) or -1)
    return max(1, min(cores, n if n > 0 else cores + 1 + n))


# --- time ---------------------------------------------------------------------------------------

def same_shape(frame: pd.DataFrame, cell: Cell, host: Optional[str]) -> pd.DataFrame:
    """Finished runs of the cell's network, data and trainer settings (any epochs or image count), on this host."""
    rows = frame
    if host and "host" in rows:
        rows = rows[rows["host"] == host]
    for key, value in cell.shape().items():
        if key not in rows:
            return rows.iloc[0:0]
        rows = rows[rows[key].map(lambda v: str(typed(str(v)))) == str(typed(value))]
    need = ["train_seconds", "train_images", "duration_s"]
    if any(c not in rows for c in need):
        return rows.iloc[0:0]
    epochs = rows["epochs_trained"] if "epochs_trained" in rows else rows.get("epochs_completed")
    return rows[rows[need].notna().all(axis=1) & (epochs > 0)].assign(_epochs=epochs)


def calibrate_from_store(cell: Cell, frame: pd.DataFrame, host: Optional[str]) -> bool:
    """Seconds per run = per-run overhead + epochs x training images x seconds per image-epoch (medians of
    comparable finished runs; their validation passes are folded into the per-image figure)."""
    rows = same_shape(frame, cell, host) if len(frame) else frame
    if rows.empty:
        return False
    per = (rows["train_seconds"] / (rows["_epochs"] * rows["train_images"])).median()
    overhead = (rows["duration_s"] - rows["train_seconds"]).clip(lower=0).median()
    cell.run_s = float(overhead + cell.epochs * cell.images[0] * per)
    cell.source = (f"{len(rows)} finished run(s) of the same shape in the store: {per * 1e3:.3f} ms per "
                   f"image-epoch, {overhead:.1f} s per run besides training")
    return True


def calibrate_by_timing(cells: list[Cell], d: Design) -> None:
    """A few timed steps of each distinct network (cells of one shape share it), in one fresh process."""
    from fashion_lab.run.timing import time_cells
    from fashion_lab.runtime.fresh_process import call_in_fresh_process

    shapes: dict[str, Cell] = {}
    for cell in cells:
        shapes.setdefault(repr(sorted(cell.shape().items())), cell)
    timed = call_in_fresh_process(time_cells, [[f"sweep={d.name}", *c.overrides] for c in shapes.values()])
    d.start_s, d.start_source = timed["import_s"] + START_S / 3, "measured (the TensorFlow import) + Hydra"
    by_shape = dict(zip(shapes, timed["cells"]))
    for cell in cells:
        t = by_shape[repr(sorted(cell.shape().items()))]
        train, val, test = cell.images
        cell.run_s = (t["setup_s"] + RECORD_S + cell.epochs * (train * t["train_s_per_image"]
                                                               + val * t["eval_s_per_image"])
                      + test * t["eval_s_per_image"])
        cell.source = (f"timed: {t['images']} images of this network on synthetic arrays, "
                       f"{t['train_s_per_image'] * 1e3:.3f} ms per training image, {t['setup_s']:.1f} s "
                       f"to build and trace, {RECORD_S:.0f} s assumed to record")


def estimate(d: Design, frame: pd.DataFrame, timing: bool = True) -> None:
    """Each cell's seconds per run: from the store where it has the cell's shape, else timed."""
    host = socket.gethostname()
    rest = [c for c in d.cells if not calibrate_from_store(c, frame, host)]
    if rest and timing:
        calibrate_by_timing(rest, d)


def wall_s(d: Design, seeds: int) -> float:
    """Expected wall seconds for ``seeds`` seeds per cell on this launcher (jobs share the runs evenly)."""
    total = sum(c.run_s for c in d.cells) * seeds
    return d.start_s + total / min(d.jobs, max(1, len(d.cells) * seeds))


# --- what the design can detect -------------------------------------------------------------------

def comparable_spread(frame: pd.DataFrame, d: Design) -> tuple[power.Spread, str]:
    """The seed spread of finished runs on the same data (name and training images) and, where such runs
    hold a spread, the same epochs; the note says which epochs it came from."""
    cell = d.cells[0]
    if frame.empty or "train_images" not in frame or "data.name" not in frame:
        return power.UNKNOWN, ""
    rows = frame[(frame["data.name"].astype(str) == str(cell.flat.get("data.name")))
                 & (frame["train_images"] == cell.images[0])]
    epochs = rows.get("epochs_completed", pd.Series(dtype=float))
    same = power.spread(rows[epochs == cell.epochs])
    if same.known:
        return same, f"at the planned {cell.epochs} epoch(s)"
    found = power.spread(rows)
    shown = sorted({int(e) for e in epochs.dropna()})
    return found, (f"at {', '.join(map(str, shown))} epoch(s), not the planned {cell.epochs}: the spread "
                   f"at full length can differ" if found.known else "")


def pairs_per_seed(d: Design, factor: str) -> int:
    return math.prod(len(v) for k, v in d.levels.items() if k != factor)


def pilot(d: Design) -> tuple[str, float]:
    """The smallest sweep that measures the spread: 3 seeds x 2 levels of the first factor at few epochs."""
    key = d.keys[0]
    epochs = min(2, d.cells[0].epochs)
    command = " ".join([f"fashion-lab sweep {d.name}", f"{key}={','.join(d.levels[key][:2])}", *d.fixed,
                        "sweep.seeds=3", "sweep.until_sure=false", f"trainer.epochs={epochs}"])
    seconds = d.start_s + 6 * d.cells[0].run_s * epochs / max(1, d.cells[0].epochs)
    return command, seconds


def sensitivity_lines(d: Design, found: power.Spread, note: str) -> list[str]:
    head = "What it can detect (80 % power, 5 % two-sided, paired t on test accuracy, as the answer tests):"
    if not d.keys:
        return [head, "  nothing is swept: no comparison to detect."]
    if not found.known:
        command, seconds = pilot(d)
        return [head, "  unknown: the store holds no comparable finished runs with a seed spread (same data "
                      f"and training images). A pilot measures it: {command}  ({minutes(seconds)} here)",
                f"Seeds per level for \u00b1{TARGET * 100:.1f} pt: unknown until the spread is measured."]
    low, high = found.interval()
    lines = [head, f"  spread: {found.sd * 100:.2f} pt SD of matched differences (95 % chi-square interval "
                   f"{low * 100:.2f} to {high * 100:.2f} pt), {found.source}" + (f", {note}" if note else "")]
    need = []
    for key in d.keys:
        per = pairs_per_seed(d, key)
        planned = power.plan_sensitivity(key, d.seeds[0], per, found, TARGET)
        text = f"  {key}: {planned.pairs} matched pairs -> {shown_mdd(planned.mdd)}"
        if d.seeds[1] > d.seeds[0]:
            most = power.plan_sensitivity(key, d.seeds[1], per, found, TARGET)
            text += f" (at {d.seeds[1]} seeds: {shown_mdd(most.mdd)})"
        lines.append(text)
        need.append(f"{key}: about {count(planned.seeds_for_target)} (anywhere from "
                    f"{count(planned.seeds_range[0])} to {count(planned.seeds_range[1])})")
    lines.append(f"Seeds per level for \u00b1{TARGET * 100:.1f} pt: " + "; ".join(need) + ".")
    return lines


def shown_mdd(value: float) -> str:
    """An MDD for a line: beyond 100 pt no accuracy difference could reach it."""
    return "more than \u00b1100 pt (no useful power)" if value > 1 else f"\u00b1{value * 100:.1f} pt"


def count(seeds: Optional[int]) -> str:
    return "over 100,000" if seeds is None else f"{seeds:,}"


def minutes(seconds: float) -> str:
    return f"about {seconds:.0f} s" if seconds < 90 else (
        f"about {seconds / 60:.0f} min" if seconds < 5400 else f"about {seconds / 3600:.1f} h")


# --- the plan ---------------------------------------------------------------------------------------

def budget_lines(d: Design) -> list[str]:
    low, high = d.seeds
    n = len(d.cells)
    epochs = sorted({c.epochs for c in d.cells})
    image_epochs = sum(c.epochs * c.images[0] for c in d.cells)
    run_epochs = sum(c.epochs for c in d.cells)
    span = (lambda a, b, f=str: f(a) if a == b else f"{f(a)} to {f(b)}")
    thousands = (lambda v: f"{v:,}")
    return [f"Runs: {span(n * low, n * high)} ({n} cell(s) x {span(low, high)} seed(s)"
            + (", sweep.until_sure adds seeds only while a comparison is undecided" if high > low else "") + ")",
            f"Epochs: {', '.join(map(str, epochs))} per run, "
            f"{span(run_epochs * low, run_epochs * high, thousands)} in all",
            f"Images: {d.cells[0].images[0]:,} training, {d.cells[0].images[1]:,} validation, "
            f"{d.cells[0].images[2]:,} test per run; {span(image_epochs * low, image_epochs * high, thousands)} "
            f"training image-epochs in all"]


def time_lines(d: Design) -> list[str]:
    low, high = wall_s(d, d.seeds[0]), wall_s(d, d.seeds[1])
    where = "one run at a time (basic launcher)" if d.jobs == 1 else (
        f"{d.jobs} parallel jobs (joblib), assuming they share the cores without slowing each other")
    sources = [f"{c.label}: {c.source}" if c.label else c.source for c in d.cells]
    most = f" to {minutes(high)} ({high:.0f} s)" if high > low else ""
    return [f"Expected wall time: {minutes(low)} ({low:.0f} s){most}"
            f" on this machine ({socket.gethostname()}, {len(os.sched_getaffinity(0))} CPU(s)), {where}; "
              f"start {d.start_s:.0f} s ({d.start_source})",
            *[f"  calibration: {s}" for s in sources]]


def plan_lines(name: str, path: Path, overrides: list[str], frame: Optional[pd.DataFrame] = None,
               timing: bool = True) -> list[str]:
    """Everything the plan prints; ``frame``: the store's finished runs (default: read from tracking.uri)."""
    from fashion_lab.record.evidence import finished_runs

    d = design(name, path, overrides)
    if not d.cells:
        raise ConfigError(f"sweep {name!r} has no points")
    frame = finished_runs(*d.store) if frame is None else frame
    estimate(d, frame, timing)
    found, note = comparable_spread(frame, d)
    return [f"Plan for sweep {name} (sweep.plan=true: nothing is trained, no run is created; store {d.store[0]}):",
            *budget_lines(d), *time_lines(d), *race_plan.race_lines(d, path, overrides, minutes),
            *sensitivity_lines(d, found, note),
            "Run it: " + " ".join(["fashion-lab sweep", name, *[o for o in overrides if not o.startswith("sweep.plan")]])]
