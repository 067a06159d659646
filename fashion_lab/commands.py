"""Hydra entry points behind the CLI commands. TensorFlow is imported only inside a task."""

from __future__ import annotations

import sys
from typing import Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fashion_lab.config import CONF_DIR, ConfigError, register_configs, validate


def fail(message: str, code: int = 2) -> None:
    """One clear line on stderr and a non-zero exit, before any work starts."""
    print(f"fashion-lab: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_hydra(task: Callable[[DictConfig], object], argv: list[str], prog: str,
              config_name: str = "config") -> int:
    """Run ``task`` as a Hydra app on ``argv`` (overrides, -m, --help, ...)."""
    register_configs()
    main = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(task)
    saved = sys.argv
    sys.argv = [prog, *argv]
    try:
        main()
    finally:
        sys.argv = saved
    return 0


def task_overrides() -> list[str]:
    """The command-line overrides of this job (one sweep point's, in a multirun)."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _train_task(cfg: DictConfig):
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        from fashion_lab.sweep import run_point  # one point of a sweep: a child run, failures reported at the end

        return run_point(cfg)
    try:
        validate(cfg)
        from fashion_lab.server import check_credentials

        check_credentials(cfg.tracking)  # a login the server refuses: one line, before TensorFlow loads
    except ConfigError as error:
        fail(str(error))
    from fashion_lab.train import print_result, train
    from fashion_lab.tracking import Terminated

    try:
        result = train(cfg, overrides=task_overrides())
    except Terminated:
        print("fashion-lab: terminated; run recorded as KILLED", file=sys.stderr)
        raise SystemExit(143)
    print_result(result)
    return result.metrics["best_val_accuracy"]


def train_command(argv: list[str]) -> int:
    return run_hydra(_train_task, argv, prog="fashion-lab train")
