"""The product as a user installs it: a fresh venv, the README's exact install, commands from another folder.

The README's first set-up command installs with ``pip install -e .``. Hydra finds fashion-lab's
sweepers by scanning the ``hydra_plugins`` namespace, which an import-hook editable install hides
(hydra #2359, #3252): ``tune`` and ``until_sure`` then fail at once. This test installs a copy of
the checkout exactly as the README says, into a venv that cannot see the checkout (tests/helpers/venvs.py),
and runs a 2-trial search and an until_sure sweep from an empty folder with no PYTHONPATH.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from helpers.venvs import clean_env, make_venv

pytestmark = pytest.mark.slow

SOURCES = ("pyproject.toml", "setup.py", "README.md", "fashion_lab", "hydra_plugins", "conf", "sweeps")
TINY = ["data=synthetic", "trainer.epochs=1", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "trainer.verbose=0"]


def readme_install_command() -> str:
    """The ``pip install ...`` of the README's first set-up command (the main job)."""
    first = next(line for line in (REPO / "README.md").read_text().splitlines() if "pip install" in line)
    return re.search(r"pip install [^&]+", first).group(0).strip()


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("as_installed")
    clone = root / "fashion-lab"
    clone.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, clone / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(source, clone / name)
    bin_dir = make_venv(root / "venv")
    command = readme_install_command()
    assert command.startswith("pip install -e ."), command  # what this test is about
    install = subprocess.run(f"{bin_dir}/{command}", shell=True, cwd=clone, capture_output=True, text=True,
                             timeout=900, env=clean_env(), stdin=subprocess.DEVNULL)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return {"bin": bin_dir, "clone": clone, "cwd": elsewhere}


def run_as_user(user, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(user["bin"] / "fashion-lab"), *args], cwd=user["cwd"], capture_output=True,
                            text=True, timeout=timeout, env=clean_env(), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def finished_children(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                           "WHERE t.key = 'mlflow.parentRunId' AND r.status = 'FINISHED'").fetchone()[0]


def test_the_venv_runs_the_installed_copy_not_the_checkout(user):
    probe = subprocess.run([str(user["bin"] / "python"), "-c",
                            "import fashion_lab, hydra_plugins.fashion_lab_kerastuner as k; "
                            "print(fashion_lab.__file__); print(k.__file__)"],
                           cwd=user["cwd"], capture_output=True, text=True, env=clean_env(), timeout=120)
    assert probe.returncode == 0, probe.stderr
    for path in probe.stdout.split():
        assert Path(path).resolve().is_relative_to(user["clone"]), path


def test_tune_finds_its_sweeper_after_the_readme_install(user):
    db = user["cwd"] / "tune.db"
    result = run_as_user(user, "tune", *TINY, "tuner.max_trials=2", f"tracking.uri=sqlite:///{db}")
    assert "best trial" in result.stdout, result.stdout[-2000:]
    assert finished_children(db) == 2


def test_until_sure_finds_its_sweeper_after_the_readme_install(user):
    db = user["cwd"] / "sure.db"
    result = run_as_user(user, "sweep", "quickstart", "sweep.until_sure=true", "sweep.seeds=2", "sweep.max_seeds=2",
                         *TINY, f"tracking.uri=sqlite:///{db}")
    assert "Answer" in result.stdout, result.stdout[-2000:]
    assert finished_children(db) == 4  # sgd, adam x 2 seeds
