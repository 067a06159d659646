"""A real wheel, installed outside the checkout, finds its configs (conf/ and sweeps/ ship inside it).

Builds the wheel with pip (no build isolation: setuptools and wheel are already installed, so no
network), installs it with ``pip install --target``, and runs commands from a folder outside the
repository with only that folder on PYTHONPATH, in a fresh venv that cannot see the checkout
(tests/helpers/venvs.py). About 10 s; no TensorFlow is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fashion_lab import config
from helpers.venvs import clean_env, make_venv

REPO = Path(__file__).resolve().parents[2]
# What the build reads. Copied to a temporary folder so the build never writes build/ or *.egg-info
# into the checkout, and a stale build/lib from an earlier build can't leak deleted files into the wheel.
SOURCES = ("pyproject.toml", "setup.py", "README.md", "fashion_lab", "hydra_plugins", "conf", "sweeps")


def pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"pip {' '.join(args)}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The wheel built from this checkout, and the folder it is installed into."""
    for backend in ("setuptools", "wheel"):  # the build backend, used in place (the [dev] extra has them)
        pytest.importorskip(backend, reason=f"{backend} is needed to build the wheel: pip install -e '.[dev]'")
    root = tmp_path_factory.mktemp("packaging")
    src = root / "src"
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, src / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                          if (REPO / name).is_dir() else {}))
    pip("wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(root / "dist"), str(src), cwd=root)
    (wheel,) = (root / "dist").glob("fashion_lab-*.whl")
    pip("install", "--no-deps", "--no-index", "--target", str(root / "site"), str(wheel), cwd=root)
    elsewhere = root / "elsewhere"  # an empty working directory, outside the repository
    elsewhere.mkdir()
    python = make_venv(root / "venv", with_pip=False) / "python"
    return {"wheel": wheel, "site": root / "site", "cwd": elsewhere, "python": python}


def run_installed(installed, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` seeing the installed wheel, not this checkout: a venv that cannot see the
    checkout, only the install folder on PYTHONPATH, the working directory elsewhere."""
    env = clean_env(PYTHONPATH=str(installed["site"]))
    result = subprocess.run([str(installed["python"]), *args], cwd=installed["cwd"], env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def test_checkout_uses_its_own_folders():
    assert config.FROM_CHECKOUT
    assert config.CONF_DIR == REPO / "conf" and config.SWEEPS_DIR == REPO / "sweeps"


def test_wheel_holds_every_config_file(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for folder, packaged in (("conf", "_conf"), ("sweeps", "_sweeps")):
        expected = {f"fashion_lab/{packaged}/{p.relative_to(REPO / folder).as_posix()}"
                    for p in (REPO / folder).rglob("*.yaml")}
        assert expected and expected <= names, sorted(expected - names)
    assert "fashion_lab/_conf/data/synthetic.yaml" in names  # a config group's subfolder
    assert not any(n.startswith(("conf/", "sweeps/")) for n in names)  # no stray top-level packages
    # The KerasTuner sweeper, in Hydra's plugin namespace (no hydra_plugins/__init__.py: other plugins share it)
    assert "hydra_plugins/fashion_lab_kerastuner/kerastuner_sweeper.py" in names
    assert "hydra_plugins/__init__.py" not in names


def test_installed_wheel_imports_itself_and_composes(installed):
    site = installed["site"].resolve()
    probe = ("import json, sys, fashion_lab, fashion_lab.config as c; "
             "cfg = c.compose(['optimizer=adam']); "
             "print(json.dumps({'file': fashion_lab.__file__, 'conf': str(c.CONF_DIR), "
             "'sweeps': str(c.SWEEPS_DIR), 'checkout': c.FROM_CHECKOUT, 'path': sys.path, "
             "'optimizer': cfg.optimizer.name.value, 'tf': 'tensorflow' in sys.modules}))")
    out = json.loads(run_installed(installed, "-c", probe).stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(site), out["file"]  # the wheel, not the checkout
    assert not any(p and Path(p).resolve() == REPO for p in out["path"])
    assert out["checkout"] is False
    assert Path(out["conf"]) == site / "fashion_lab" / "_conf"
    assert Path(out["sweeps"]) == site / "fashion_lab" / "_sweeps"
    assert out["optimizer"] == "adam"
    assert out["tf"] is False


def test_installed_cli_lists_sweeps_and_runs_hydra(installed):
    listing = run_installed(installed, "-m", "fashion_lab.cli.main", "sweep", "--list").stdout
    listed = {line.split()[0] for line in listing.splitlines() if line.strip()}
    assert {"quickstart", "search", "ablation", "bn_placement"} <= listed
    assert listed == {p.stem for p in (REPO / "sweeps").glob("*.yaml")}
    # The console script, and hydra.main on the packaged conf/ (prints the config, trains nothing).
    job = run_installed(installed, str(installed["site"] / "bin" / "fashion-lab"), "train", "--cfg", "job",
                        "optimizer=adam").stdout
    assert "name: adam" in job and "learning_rate: 0.001" in job
    assert not any(installed["cwd"].iterdir())  # --cfg wrote nothing where it ran
    # Hydra finds the KerasTuner sweeper that ships in the wheel.
    hydra = run_installed(installed, str(installed["site"] / "bin" / "fashion-lab"), "train", "--cfg", "hydra",
                          "hydra/sweeper=kerastuner").stdout
    assert "_target_: hydra_plugins.fashion_lab_kerastuner.kerastuner_sweeper.KerasTunerSweeper" in hydra
