"""Shared fixtures: run the real CLI in a subprocess, compose real Hydra configs, open real stores."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# TensorFlow in this process computes with the kernels the installed command uses (cli/main.py turns oneDNN on;
# AMD CPUs have it off by default), so a run trained here reproduces exactly through `fashion-lab reproduce`.
# Set before any test module imports TensorFlow (collection).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# The suite's own imports use this checkout's code (also from a git worktree). The commands it
# starts do not: they are the installed console script, as a user runs it (pytest_sessionstart
# checks that the installed fashion-lab is this checkout).
sys.path.insert(0, str(REPO))
FASHION_LAB = str(Path(sysconfig.get_path("scripts")) / "fashion-lab")


def fashion_lab(*args: str) -> list[str]:
    """The argv of ``fashion-lab ARGS``: the installed console script, not ``python -m`` on the checkout."""
    return [FASHION_LAB, *args]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment a command starts in: the user's, with nothing of this checkout on PYTHONPATH."""
    env = dict(os.environ)
    kept = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep) if p and Path(p).resolve() != REPO]
    if kept:
        env["PYTHONPATH"] = os.pathsep.join(kept)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def pytest_sessionstart(session):
    """The installed ``fashion-lab`` must be this checkout, or every command test would test another copy."""
    probe = subprocess.run([sys.executable, "-c", "import fashion_lab; print(fashion_lab.__file__)"],
                           cwd=sysconfig.get_path("scripts"), env=cli_env(), capture_output=True, text=True)
    found = Path(probe.stdout.strip()).resolve() if probe.returncode == 0 else None
    if found is None or not found.is_relative_to(REPO) or not Path(FASHION_LAB).is_file():
        pytest.exit(f"the installed fashion-lab is {found or 'missing'}, not this checkout ({REPO}): "
                    f"run `pip install -e .` here (or in a venv for this checkout) first", returncode=4)


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a command a test will Ctrl-C: SIGINT back to its default, as in a terminal.
    A suite started in the background by a non-interactive shell (``cmd &``) inherits SIGINT ignored,
    and Python then never raises KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def run_cli(tmp_path):
    """``run_cli("train", "data=synthetic", ...)`` runs ``fashion-lab`` in tmp_path and returns the result."""

    def run(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None,
            check: bool = False) -> subprocess.CompletedProcess:
        result = subprocess.run(fashion_lab(*args), cwd=cwd or tmp_path,
                                capture_output=True, text=True, timeout=timeout, env=cli_env(**(env or {})),
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    return run


@pytest.fixture
def cli_in_process(tmp_path, monkeypatch, capsys):
    """``cli_in_process("train", "trainer.seed=-1")``: the CLI's own ``main`` in this process, in tmp_path.

    For refusals, which end before any training: the same code path as ``fashion-lab ...`` (the argv
    parser, Hydra's composition, preflight, the one-line exit), without a second interpreter's start-up
    (~3 s each). Returns a ``CompletedProcess`` like ``run_cli`` does; the CLI contract itself (the
    installed script, its exit code, nothing written) keeps its subprocess tests."""
    import signal

    from fashion_lab.cli.main import main

    def run(*args: str, env: dict | None = None, **_ignored) -> subprocess.CompletedProcess:
        monkeypatch.chdir(tmp_path)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        handler = signal.getsignal(signal.SIGTERM)
        capsys.readouterr()  # only this command's output
        if "absl.logging" in sys.modules:
            # Hydra's logging set-up (a multirun) closes every handler; absl's closes its stream unless it
            # is today's sys.stderr. A real process has one stderr; here absl's is pytest's own, so hand it
            # the captured one for the call, or pytest's stream is closed under it ("lost sys.stderr").
            absl = sys.modules["absl.logging"].get_absl_handler().python_handler
            monkeypatch.setattr(absl, "stream", sys.stderr)
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        finally:
            signal.signal(signal.SIGTERM, handler)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["fashion-lab", *args], code, out, err)

    return run


@pytest.fixture
def store(tmp_path) -> str:
    """A fresh embedded MLflow store in tmp_path."""
    return f"sqlite:///{tmp_path / 'm.db'}"


def compose(overrides=()):
    """The config ``fashion-lab train <overrides>`` would run (Hydra compose API, real conf/)."""
    from fashion_lab.config import compose as compose_config

    return compose_config(overrides)


@pytest.fixture
def sweeps(tmp_path) -> Path:
    """A sweeps folder (for $FASHION_LAB_SWEEPS_DIR) with the search tests' small and diverging spaces."""
    from helpers.search import DIVERGING_SPACE, SMALL_SPACE

    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "small.yaml").write_text(SMALL_SPACE)
    (folder / "diverging.yaml").write_text(DIVERGING_SPACE)
    return folder


@pytest.fixture
def synthetic_cfg(store):
    """A tiny synthetic config that trains in seconds, recording into ``store``."""
    return compose(["data=synthetic", "trainer.epochs=2", "trainer.batch_size=32", "trainer.verbose=0",
                    f"tracking.uri={store}"])


# --- a small recorded grid sweep, built once per session (reports, notebooks, UI read it) -----

SWEEP_KEYS = ("model.bn_placement", "model.conv_dropout")
SWEEP_LEVELS = {"model.bn_placement": ("after", "none"), "model.conv_dropout": (0.0, 0.25)}
SWEEP_SEEDS = (0, 1)


def build_sweep_store(uri: str, name: str = "tiny_grid") -> str:
    """A 2x2 grid with 2 seeds (8 children) on tiny synthetic data, recorded as a real sweep; returns its id."""
    import itertools

    from fashion_lab.record import tracking
    from fashion_lab.run.train import train

    base = ["data=synthetic", "data.synthetic_train=300", "data.synthetic_test=100", "data.val_samples=60",
            "trainer.epochs=1", "trainer.batch_size=32", "trainer.verbose=0", "trainer.deterministic=true",
            f"tracking.uri={uri}"]
    cfg = compose(base)
    pid = tracking.open_parent_run(cfg.tracking, name=name, role="sweep", strategy="grid", sweep_name=name,
                                   swept_keys=list(SWEEP_KEYS), definition="# tiny test grid\n")
    best = 0.0
    for bn, drop, seed in itertools.product(*SWEEP_LEVELS.values(), SWEEP_SEEDS):
        point = [f"model.bn_placement={bn}", f"model.conv_dropout={drop}", f"trainer.seed={seed}"]
        result = train(compose(base + point), overrides=point, parent_run_id=pid,  # default run names
                       tags=tracking.child_tags(pid, name, "point", "grid"))
        best = max(best, result.metrics["best_val_accuracy"])
    tracking.close_parent_run(cfg.tracking, pid, status="FINISHED", summary={"best_val_accuracy": best, "points": 8})
    return pid


@pytest.fixture(scope="session")
def sweep_store(tmp_path_factory) -> tuple[str, str]:
    """(tracking uri, parent run id) of a small recorded grid sweep; shared by the whole session."""
    folder = tmp_path_factory.mktemp("sweep_store")
    uri = f"sqlite:///{folder / 'sweep.db'}"
    return uri, build_sweep_store(uri)
