"""A search (any backend): its definition, fingerprint, oracle, trials' overrides and its end.

The sweeper (hydra_plugins/fashion_lab_kerastuner) turns each trial into job overrides (the
sampled values after the base overrides, so Hydra composes group choices) and every trial is a
``train()`` run. A promoted Hyperband round trains to the round's ``tuner/epochs``, continuing its
previous round's recorded weights (``tuner.continue_rounds``; job.round_start). State
lives in ``<tuner.directory>/<project>/``; ``fashion_lab.json`` keeps the fingerprint (space,
strategy, base overrides), and a changed search under the same project is refused.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from fashion_lab import config
from fashion_lab.sweeps import grid as sweep
from fashion_lab.config import STRATEGIES, is_setting, override_key, without_hydra
from fashion_lab.preflight import validate
from fashion_lab.search.space import SpaceError, check_space, describe, fingerprint, has_intervals, parse_space, pin, to_overrides
from fashion_lab.record.store import check_store
from fashion_lab.search.backend import unavailable
from fashion_lab.search.start import start_points
from fashion_lab.search.state_files import atomic_write_text, check_state_files, read_state

OBJECTIVES = {"val_accuracy": "max", "val_loss": "min"}
STATE_FILE = "fashion_lab.json"
SEEDABLE = ("random", "bayesian", "tpe", "cmaes")  # tuner.seed_from_store: Hyperband and the grid have no place for seeds
MARKER = ".made-by-fashion-lab"  # written when fashion-lab creates a tuner folder; overwrite deletes only such folders


def trained_overrides(overrides: list[str]) -> list[str]:
    """The command line's overrides that change what a trial trains (part of the search's identity)."""
    return [o for o in overrides if not is_setting(override_key(o))]


def merge(base: list[str], extra: list[str]) -> list[str]:
    """``base`` then ``extra``, an ``extra`` key replacing the same key in ``base`` (Hydra refuses duplicates)."""
    replaced = {override_key(o) for o in extra}
    return [o for o in base if override_key(o) not in replaced] + list(extra)


def command_overrides(argv: list[str]) -> list[str]:
    """``tune [SWEEP] [overrides]`` as a multirun's overrides: ``sweep=SWEEP`` first, then the file's
    strategy as ``tuner=`` unless the command names a tuner (a grid file runs with the default tuner)."""
    name, overrides = "search", list(argv)
    if overrides and "=" not in overrides[0] and not overrides[0].startswith("-"):
        name, overrides = overrides[0], overrides[1:]
    files = config.sweep_files()
    if name not in files:
        raise SpaceError(f"no sweep file {name!r}; available: {', '.join(sorted(files))}")
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise SpaceError(f"unexpected arguments {bad}: give [SWEEP] then key=value overrides")
    config.register_configs()
    config.check_overrides([f"sweep={name}", *overrides])  # unknown keys; a sweep file naming code
    strategy = sweep.strategy(files[name])
    named = any(override_key(o) == "tuner" for o in overrides)
    return [f"sweep={name}", *([f"tuner={strategy}"] if not named and strategy in STRATEGIES and strategy != "grid" else []), *overrides]


@dataclass
class Search:
    name: str                       # sweep file name
    project: str                    # tuner state folder name (default: name)
    base: list[str]                 # overrides every trial starts from (sweep=NAME first)
    cfg: Any                        # the composed base config
    dims: list
    strategy: str
    definition: str                 # YAML of the space, stored on the parent run
    swept_keys: list[str]
    fingerprint: str
    start: list = field(default_factory=list)  # points run first (search/start.py): the base, sweep.initial_points
    seeds: list = field(default_factory=list)  # finished runs in the space (tuner.seed_from_store; search/seeding.py)
    parent_run_id: Optional[str] = None
    failures: list[str] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return Path(self.cfg.tuner.directory) / self.project


def prepare(cfg, arguments: list[str]) -> Search:
    """Check the search composed from ``arguments`` (a multirun's config, with its hydra node); no data, no run."""
    params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=False) if cfg.hydra.sweeper.get("params") else {}
    conditions = OmegaConf.to_container(cfg.sweep.conditions)
    tuner = cfg.tuner
    if tuner.strategy not in STRATEGIES:
        raise SpaceError(f"tuner.strategy={tuner.strategy!r} is not allowed: one of {', '.join(STRATEGIES)}")
    if unavailable(tuner.strategy):
        raise SpaceError(unavailable(tuner.strategy))
    if tuner.objective not in OBJECTIVES:
        raise SpaceError(f"tuner.objective={tuner.objective!r} is not allowed: one of {', '.join(OBJECTIVES)}")
    for key in ("max_trials", "max_epochs", "executions_per_trial", "max_consecutive_failed_trials",
                "parallel_trials"):
        if tuner[key] < 1:
            raise SpaceError(f"tuner.{key}={tuner[key]!r} is not allowed: an integer >= 1")
    if tuner.seed_from_store and tuner.strategy not in SEEDABLE:
        raise SpaceError(f"tuner.seed_from_store=true is not allowed with tuner.strategy={tuner.strategy}: "
                         f"one of {', '.join(SEEDABLE)} (or tuner.seed_from_store=false)")
    if tuner.factor < 2:
        raise SpaceError(f"tuner.factor={tuner.factor!r} is not allowed: an integer >= 2")
    # A swept key given on the command line is pinned: the search varies the rest.
    space = parse_space(params, conditions)
    dims = pin(space, {override_key(o): o.split("=", 1)[1] for o in arguments})
    if tuner.strategy == "grid" and has_intervals(dims):
        raise SpaceError("tuner=grid needs a space of choices only; "
                         f"{[d.key for d in dims if d.kind != 'choice']} are intervals: use tuner=random|bayesian|hyperband")
    if tuner.strategy == "cmaes" and not has_intervals(dims):
        raise SpaceError("tuner=cmaes needs at least one interval in the space (CMA-ES samples numbers; choices "
                         "are drawn at random); this space has choices only: use tuner=tpe or tuner=grid")
    plain = without_hydra(cfg)
    validate(plain)  # the base config itself must be valid before anything starts
    check_space(plain, dims)  # every entry's keys and bounds, before the first trial
    name = cfg.sweep.name or "search"
    definition = OmegaConf.to_yaml({"sweep": name, "strategy": tuner.strategy, "params": params,
                                    "conditions": conditions, "space": describe(dims), "base_overrides": arguments})
    swept = [f"{d.key}.name" if "." not in d.key and "name" in plain.get(d.key, {}) else d.key for d in dims]
    search = Search(name=name, project=tuner.project or name, base=list(arguments), cfg=plain, dims=dims,
                    strategy=tuner.strategy, definition=definition, swept_keys=swept,
                    start=start_points(plain, dims, [d.key for d in space]),
                    fingerprint=fingerprint(dims, tuner.strategy, trained_overrides(arguments)))
    check_overwrite(search)  # before the store is opened: a refused command writes nothing
    check_store(plain.tracking)
    return search


def prepare_command(argv: list[str]) -> Search:
    """``prepare`` for a ``fashion-lab tune`` command line (tests and scripts)."""
    overrides = command_overrides(argv)
    return prepare(config.compose(overrides, return_hydra_config=True), overrides)


# --- saved state: the fingerprint ------------------------------------------------------------

def made_by_us(directory: Path) -> bool:
    """True for a tuner folder fashion-lab made: a real folder (no symlink) with its state file and marker."""
    return (directory.is_dir() and not directory.is_symlink()
            and (directory / STATE_FILE).is_file() and (directory / MARKER).is_file())


def check_overwrite(search: Search) -> None:
    """``tuner.overwrite=true`` deletes only a folder fashion-lab made; any other folder is refused, untouched.
    tuner.directory may point anywhere (the store's folder, a home directory): never trust it to be ours."""
    folder = search.directory
    if search.cfg.tuner.overwrite and (folder.exists() or folder.is_symlink()) and not made_by_us(folder):
        raise SpaceError(
            f"tuner.overwrite=true is refused for {folder} (tuner.directory/tuner.project): fashion-lab did not "
            f"make that folder (it lacks {STATE_FILE} and {MARKER}), so it is never deleted; "
            f"choose another tuner.project or tuner.directory, or remove the folder yourself")


def claim_folder(search: Search) -> None:
    """Create a new search's folder with fashion-lab's marker, the proof that overwrite may delete it later."""
    if not search.directory.exists():
        search.directory.mkdir(parents=True)
        atomic_write_text(search.directory / MARKER, json.dumps({"made_by": "fashion-lab", "project": search.project}))


def check_resumable(search: Search) -> bool:
    """True to resume the saved search, False for a new one; refuses a changed space, strategy or base overrides."""
    check_overwrite(search)
    if search.cfg.tuner.overwrite and search.directory.exists():
        shutil.rmtree(search.directory)
    path = search.directory / STATE_FILE
    if search.directory.is_dir():
        check_state_files(search.directory)  # a broken state file: one line naming it, before any run opens
    state = read_state(path) if path.exists() else None
    if state is None and not search.directory.exists():
        return False
    if state is None or state.get("fingerprint") != search.fingerprint:
        was = ""
        if state:
            before, now = state.get("trained_overrides"), trained_overrides(search.base)
            was = f" (it was {state['strategy']}" + (
                f", base overrides [{' '.join(before)}], now [{' '.join(now)}]" if before not in (None, now) else "") + ")"
        raise SpaceError(
            f"a different search already lives in {search.directory}{was}; the space, strategy or base overrides of "
            f"'{search.project}' changed. Start a new search with tuner.project=NEW_NAME (or another "
            f"tuner.directory), or discard the old one with tuner.overwrite=true")
    return True


def save_state(search: Search) -> None:
    search.directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(search.directory / STATE_FILE, json.dumps({
        "sweep": search.name, "strategy": search.strategy, "fingerprint": search.fingerprint,
        "trained_overrides": trained_overrides(search.base)}, indent=2))


# --- the trials ----------------------------------------------------------------------------


def trial_jobs(search: Search, trial) -> list[list[str]]:
    """A backend Trial's jobs (one per execution, seeds trainer.seed + i): the overrides Hydra composes."""
    values, t = trial.values, search.cfg.tuner
    extra = [f"trainer.epochs={values['tuner/epochs']}"] if "tuner/epochs" in values else []  # Hyperband's budget
    if t.early_stopping_patience:
        extra.append(f"trainer.early_stopping_patience={t.early_stopping_patience}")
    tags = {"trial_id": trial.trial_id}
    if "tuner/bracket" in values:
        tags.update(bracket=values["tuner/bracket"], round=values["tuner/round"], hyperband_epochs=values["tuner/epochs"])
        if "tuner/trial_id" in values:
            tags["continues_trial"] = values["tuner/trial_id"]
    jobs = []
    for execution in range(t.executions_per_trial):
        seeds = [f"trainer.seed={search.cfg.trainer.seed + execution}"] if t.executions_per_trial > 1 else []
        job_tags = {**tags, "execution": execution}
        plumbing = [f"sweep.trial={{{','.join(f'{k}:{str(v)!r}' for k, v in job_tags.items())}}}"]
        if search.parent_run_id:
            plumbing.append(f"sweep.parent_run_id={search.parent_run_id}")
        jobs.append(merge(search.base, to_overrides(search.dims, values) + extra + seeds + plumbing))
    return jobs


def score(search: Search, results: list) -> float:
    """The trial's objective: the mean over its executions (JobResults) of each run's best epoch's value."""
    values = [r.objectives[search.cfg.tuner.objective] for r in results]
    return sum(values) / len(values)
