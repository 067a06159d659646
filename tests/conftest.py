"""Shared fixtures: run the real CLI in a subprocess, compose real Hydra configs, open real stores."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Tests use this checkout's code (also from a git worktree), never another installed copy.
sys.path.insert(0, str(REPO))


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


@pytest.fixture
def run_cli(tmp_path):
    """``run_cli("train", "data=synthetic", ...)`` runs ``fashion-lab`` in tmp_path and returns the result."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "fashion_lab.cli", *args], cwd=cwd or tmp_path,
                                capture_output=True, text=True, timeout=timeout, env=cli_env(**(env or {})),
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    return run


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh embedded MLflow store in tmp_path."""
    return f"sqlite:///{tmp_path / 'm.db'}"


def compose(overrides: list[str] | tuple[str, ...] = ()):
    """The config ``fashion-lab train <overrides>`` would run (Hydra compose API, real conf/)."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from fashion_lab.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))


@pytest.fixture
def synthetic_cfg(store):
    """A tiny synthetic config that trains in seconds, recording into ``store``."""
    return compose(["data=synthetic", "trainer.epochs=2", "trainer.batch_size=32", "trainer.verbose=0",
                    f"tracking.uri={store}"])
