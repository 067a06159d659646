"""The command layer: ``train``, ``sweep`` and ``tune`` as Hydra apps, and the one place where errors
become exit statuses and messages. TensorFlow is imported only inside a task.

Exit statuses: 0 done; 1 a point or trial failed, or a search stopped early; 2 bad input (before
any run exists); 75 another live command owns the sweep (named; nothing was changed, try again later);
130 Ctrl-C and 143 SIGTERM (the runs are closed KILLED; the same command resumes).
"""

from __future__ import annotations

import sys
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fashion_lab.sweeps import grid as sweep, pack as packs
from fashion_lab.cli.hydra_flags import shows_only, split_hydra_flags
from fashion_lab.config import CONF_DIR, ConfigError, check_overrides, check_sweep, register_configs, sweep_files


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit, before any work starts."""
    print(f"fashion-lab: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_hydra(task: Callable[[DictConfig], object], argv: list[str], prog: str,
              config_name: str = "config") -> int:
    """Run ``task`` as a Hydra app on ``argv`` (overrides, -m, --help, ...); typed errors become exits."""
    from fashion_lab.sweeps import campaign
    from fashion_lab.search.space import SpaceError
    from fashion_lab.record.tracking import Busy, Terminated

    try:
        register_configs()
        if not {"-sc", "--shell-completion"} & set(argv):  # a completion query is Hydra's, not overrides
            check_overrides(argv)  # unknown keys, with or without +, get a "did you mean", not Hydra's "use +"
    except ConfigError as error:
        fail(str(error))
    main = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [prog, *argv]
    try:
        main()
    except campaign.Stop as stop:
        if isinstance(stop.error, campaign.SweepFailed):  # after the summary, which says what failed
            print(f"fashion-lab: {stop.error}", file=sys.stderr)
            return 1
        fail(str(stop.error), code=75 if isinstance(stop.error, Busy) else 2)  # 75: busy, try again later
    except (ConfigError, SpaceError) as error:
        fail(str(error))
    except KeyboardInterrupt:
        campaign.abort("interrupted (Ctrl-C)")
        raise
    except (SystemExit, Exception):  # an unexpected error (raised as it is under HYDRA_FULL_ERROR=1): no parent stays RUNNING
        if campaign._OPEN:
            campaign.abort("the sweep crashed (see its output)", status="FAILED")
        raise
    except Terminated:
        campaign.abort("terminated (SIGTERM)")
        print("fashion-lab: terminated; runs recorded as KILLED (run the same command again to resume)",
              file=sys.stderr)
        return 143
    finally:
        sys.argv = saved
    return 0


def _train_task(cfg: DictConfig):
    from fashion_lab.config.loading import absolute_paths
    from fashion_lab.model.tf_settings import show_tf_logs

    absolute_paths(cfg)  # hydra.job.chdir=true: the store and data stay the command's own
    show_tf_logs(cfg.trainer.verbose)  # before TensorFlow is imported
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        from fashion_lab.search.backend import epoch_hook
        from fashion_lab.sweeps.job import run_job  # a grid point or a trial: a child run, failures reported at the end

        from fashion_lab.runtime.processes import exit_if_worker

        try:
            return run_job(cfg, epoch_hook=epoch_hook(cfg))  # the hook: a search's pruner, from its backend
        except BaseException as error:
            exit_if_worker(error)  # a worker told to stop: its run is closed, it takes no next point
            raise
    from fashion_lab.preflight import validate
    from fashion_lab.record.store import check_store

    try:  # before TensorFlow is imported: a bad value is refused in a second, in one line
        validate(cfg)
        check_store(cfg.tracking)
    except ConfigError as error:
        fail(str(error))
    from fashion_lab.data import DataError
    from fashion_lab.record.tracking import StoreUnwritable, Terminated, TrainingDiverged, failure_line
    from fashion_lab.run.train import print_result, train

    try:
        result = train(cfg, overrides=list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else [])
    except (ConfigError, DataError) as error:  # inside a Hydra task an error would print a traceback
        fail(str(error))  # a corrupt data file is found before any run exists
    except TrainingDiverged as error:
        fail(f"{error}; the run is recorded FAILED with this reason", code=1)
    except Terminated:
        print("fashion-lab: terminated; run recorded as KILLED", file=sys.stderr)
        raise SystemExit(143)
    except StoreUnwritable as error:  # a full disk, a store gone read-only: the run is already closed FAILED
        fail(failure_line(error), code=1)  # (in the store, or in the local spool when the store cannot take it)
    except OSError as error:
        fail(f"{error}; the run is recorded FAILED with this reason", code=1)
    print_result(result)
    return result.metrics["best_val_accuracy"]


def _check_single_run(argv: list[str]) -> None:
    """A single run's config, validated before Hydra creates its outputs/ folder: bad input writes nothing.
    Multiruns and Hydra's flags are left to Hydra (their points are validated before the first one trains)."""
    if any(a.startswith("-") for a in argv):
        return
    from fashion_lab.config import compose, without_hydra
    from fashion_lab.preflight import validate

    try:
        register_configs()
        check_overrides(argv)
        cfg = compose(argv)
    except ConfigError as error:
        fail(str(error))
    except Exception:  # noqa: BLE001 - Hydra's own grammar and type errors: Hydra reports them below, as always
        return
    try:
        validate(without_hydra(cfg))
    except ConfigError as error:
        fail(str(error))


def train_command(argv: list[str]) -> int:
    _check_single_run(argv)
    return run_hydra(_train_task, argv, prog="fashion-lab train")


# --- sweep --------------------------------------------------------------------------------------

def sweep_command(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(sweep.USAGE)
        return 0 if argv else 2
    register_configs()  # every sweep file through the guard: a refused one is never read below
    if argv[0] == "--list":
        sweep.list_sweeps()
        return 0
    flags, rest = split_hydra_flags(argv[1:])
    name, overrides = argv[0], [a for a in rest if a not in ("-m", "--multirun")]
    files = sweep_files()
    if name not in files:
        fail(f"unknown sweep {name!r}; available: {', '.join(files) or '(none in sweeps/)'} "
             f"(fashion-lab sweep --list describes them)")
    try:
        check_sweep(name)
    except ConfigError as error:
        fail(str(error))
    strategy = sweep.strategy(files[name], overrides)
    planned = sweep.setting(files[name], overrides, "sweep.plan", False).lower()
    if planned not in ("true", "false"):
        fail(f"sweep.plan={planned}: give true or false")
    if planned == "true":
        return plan_command(name, files[name], overrides, strategy)
    try:
        packs.pack_size(files[name], overrides)  # sweep.pack: a grid's seeds only, without race or until_sure
    except ConfigError as error:
        fail(str(error))
    if strategy != "grid" and sweep.setting(files[name], overrides, "sweep.seeds", 1) != "1":
        fail(f"sweep.seeds is for grids; sweep {name!r} is a {strategy} search: repeat each trial with "
             f"tuner.executions_per_trial=N instead")
    if strategy != "grid":
        return tune_command([name, *overrides, *flags])
    if shows_only(flags):  # the job's config before the sweep's params (Hydra shows no multirun)
        return train_command([f"sweep={name}", *overrides, *flags])
    try:
        if sweep.setting(files[name], overrides, "sweep.until_sure", False).lower() == "true":
            sweep.with_seeds(files[name], overrides)  # the same checks of sweep.seeds; the sweeper adds the seeds
            overrides = [*overrides, "hydra/sweeper=until_sure"]  # it chooses the seeds round by round
        else:
            overrides = packs.with_packs(files[name], sweep.with_seeds(files[name], overrides))
            if sweep.setting(files[name], overrides, "sweep.race", False).lower() == "true":
                overrides = [*overrides, "hydra/sweeper=race"]  # it trains the arms in rungs
        sweep.check_grid(sweep.dimensions(sweep._params(OmegaConf.load(files[name])), overrides), f"sweep {name!r}")
    except ConfigError as error:
        fail(str(error))
    except Exception as error:  # Hydra's grammar errors name the bad override
        fail(f"sweep {name!r}: {error}")
    return train_command(["-m", f"sweep={name}", *overrides, *flags])


def plan_command(name: str, path, overrides: list[str], strategy: str) -> int:
    """``sweep NAME sweep.plan=true``: the plan, printed; nothing trained, no run created."""
    from fashion_lab.sweeps.plan import plan_lines

    if strategy != "grid":
        fail(f"sweep.plan=true plans grids; sweep {name!r} is a {strategy} search (its budget is "
             f"tuner.max_trials: fashion-lab sweep --list)")
    try:
        check_overrides(overrides)
        lines = plan_lines(name, path, overrides)
    except ConfigError as error:
        fail(str(error))
    except Exception as error:  # Hydra's grammar and composition errors name the bad override
        text = str(error).strip()
        fail(f"sweep {name!r}: {text.splitlines()[0] if text else type(error).__name__}")
    print("\n".join(lines))
    return 0


# --- tune ---------------------------------------------------------------------------------------

TUNE_USAGE = """usage: fashion-lab tune [SWEEP] [key=value ...]

Search the space of sweeps/SWEEP.yaml (default: search) with KerasTuner (the Hydra sweeper
hydra/sweeper=kerastuner); every trial is a `fashion-lab train` run, a child of one parent run.
Re-running the same command resumes the search. Strategies: tuner=random|bayesian|hyperband|grid.
  fashion-lab tune data=small tuner.max_trials=20
  fashion-lab tune bn_placement tuner=bayesian tuner.max_trials=3
  fashion-lab tune tuner.parallel_trials=2 hydra/launcher=joblib hydra.launcher.n_jobs=2
A swept key given as an override (e.g. model.filters=[16,32]) is fixed, the rest searched.
Settings: conf/tuner (fashion-lab train --help shows them). Exit status: 0 done; 1 every trial failed,
or the search stopped after tuner.max_consecutive_failed_trials failures in a row (its best trial is
still reported and registered); 2 bad arguments or a changed search; 130/143 interrupted (run it again).
"""


def tune_command(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(TUNE_USAGE + "\nsweeps: " + ", ".join(sorted(sweep_files())))
        return 0
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from fashion_lab.search import study as search
    from fashion_lab.search.space import SpaceError

    flags, argv = split_hydra_flags(argv)  # --cfg job, --info plugins, ...: Hydra's, as on train
    hydra_args = [a for a in argv if a.startswith("hydra")]  # hydra/launcher=..., hydra.launcher.n_jobs=...
    for arg in hydra_args:  # Hydra's basic-sweeper knob: refused here, never ignored or a struct error
        if arg.split("=", 1)[0] == "hydra.sweeper.max_batch_size":
            fail(f"{arg} is not allowed: the kerastuner sweeper launches tuner.parallel_trials trials at a "
                 f"time; set tuner.parallel_trials=N instead")
    try:
        overrides = search.command_overrides([a for a in argv if a not in hydra_args])
        search.prepare(search.config.compose(overrides, return_hydra_config=True), overrides)  # fail fast, no run
    except (SpaceError, ConfigError) as error:
        fail(str(error))
    except (HydraException, OmegaConfBaseException) as error:  # the reason (not a valid bool) is in the cause
        fail(str(error).strip().splitlines()[0] + (f": {str(error.__cause__).splitlines()[0]}" if error.__cause__ else ""))
    multirun = [] if shows_only(flags) else ["-m"]  # Hydra refuses --cfg and --info with -m
    return train_command([*multirun, "hydra/sweeper=kerastuner", *hydra_args, *overrides, *flags])
