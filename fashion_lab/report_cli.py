"""``fashion-lab report | reproduce RUN_ID | ui``: Hydra entry points reading (and re-running) the record."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fashion_lab.commands import fail, run_hydra

# Metrics that measure the machine, not the model: never compared by reproduce.
TIMING = ("train_seconds", "epoch_seconds")


# --- report ---------------------------------------------------------------------------------

def _report_task(cfg: DictConfig) -> None:
    from fashion_lab.report import NothingToReport, build_report
    from fashion_lab.results import ResultsError

    r = cfg.report
    try:
        folder = build_report(cfg.tracking.uri, r.out, experiment=r.experiment or cfg.tracking.experiment,
                              sweep=r.sweep, metric=r.metric)
    except (ResultsError, NothingToReport) as error:
        fail(str(error), code=1 if isinstance(error, NothingToReport) else 2)
    print(f"report written to {folder}/ (report.html, report.md, runs.csv, effects.csv)")


def report_command(argv: list[str]) -> int:
    return run_hydra(_report_task, argv, prog="fashion-lab report")


# --- reproduce ------------------------------------------------------------------------------

def _split_run_id(argv: list[str], prog: str) -> tuple[str, list[str]]:
    if not argv or argv[0].startswith("-") or "=" in argv[0]:
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: {prog} RUN_ID [key=value overrides of the run's config]")
            raise SystemExit(0)
        fail(f"{prog}: give the RUN_ID of a recorded run first, e.g. `{prog} 3f2a... trainer.epochs=2`")
    return argv[0], argv[1:]


def recorded_config(client, run_id: str, schema_cfg: DictConfig) -> DictConfig:
    """The run's logged config.yaml, merged onto the current schema (keys added since then get defaults)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, "config.yaml", folder)
        except Exception as error:  # noqa: BLE001 - any store error means the same to the user
            fail(f"run {run_id} has no config.yaml artifact to reproduce from ({type(error).__name__})")
        logged = OmegaConf.load(path)
    cfg = OmegaConf.merge(schema_cfg, logged)
    return cfg


def compare(original: dict, new: dict, tolerance: float) -> tuple[list[tuple], bool]:
    """Rows (metric, original, new, difference, ok) for the final metrics both runs have."""
    rows, ok_all = [], True
    for name in sorted(original):
        if name.endswith(TIMING) or name not in new:
            continue
        a, b = float(original[name]), float(new[name])
        diff = b - a
        ok = (math.isnan(a) and math.isnan(b)) or abs(diff) <= tolerance
        ok_all &= ok
        rows.append((name, a, b, diff, ok))
    return rows, ok_all


def _reproduce_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    import mlflow
    from mlflow.exceptions import MlflowException

    from fashion_lab.config import ConfigError, validate
    from fashion_lab.data import DataError, load_data
    from fashion_lab.results import TAG

    # Checks first, Keras later: a bad id or other data is refused in seconds.
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    try:
        original = client.get_run(run_id)
    except MlflowException:
        fail(f"run {run_id!r} not found in {cfg.tracking.uri}; list runs with `fashion-lab report` or the UI")
    run_cfg = recorded_config(client, run_id, cfg)
    run_cfg.tracking = cfg.tracking  # record the new run where the user points, not where the old one was
    run_cfg.tracking.run_name = None
    try:  # the user's overrides apply to the recorded config (dotted keys)
        run_cfg = OmegaConf.merge(run_cfg, OmegaConf.from_dotlist(
            [o for o in overrides if not o.startswith(("tracking.", "reproduce.", "hydra."))]))
        validate(run_cfg)
    except (ConfigError, Exception) as error:  # noqa: BLE001 - OmegaConf type errors name key and value
        fail(f"bad override for reproduce: {error}")
    try:
        splits = load_data(run_cfg.data)
    except DataError as error:
        fail(str(error))
    recorded = original.data.tags.get(TAG + "data_digest")
    if recorded and recorded != splits.digest:
        fail(f"local data digest {splits.digest} differs from the run's {recorded}: "
             "the same config would train on different data; refusing to reproduce")

    from fashion_lab.train import train

    name = f"reproduce {original.info.run_name or run_id[:8]}"[:60]
    result = train(run_cfg, overrides=list(overrides), run_name=name,
                   tags={TAG + "reproduces": run_id, TAG + "command": f"fashion-lab reproduce {run_id}"},
                   splits=splits)
    rows, ok = compare(original.data.metrics, result.metrics, float(cfg.reproduce.tolerance))
    print(f"{'metric':<26} {'original':>12} {'reproduced':>12} {'difference':>12}")
    for name, a, b, diff, good in rows:
        print(f"{name:<26} {a:>12.6f} {b:>12.6f} {diff:>+12.2e}{'' if good else '  <- differs'}")
    print(f"original run {run_id}, new run {result.run_id}: "
          + ("metrics match" if ok else f"metrics differ beyond reproduce.tolerance={cfg.reproduce.tolerance}"))
    return 0 if ok else 1


def reproduce_command(argv: list[str]) -> int:
    run_id, rest = _split_run_id(argv, "fashion-lab reproduce")
    code = {}

    def task(cfg: DictConfig) -> None:
        code["rc"] = _reproduce_task(cfg, run_id, list(rest))

    run_hydra(task, rest, prog="fashion-lab reproduce")
    return code.get("rc", 1)


# --- ui -------------------------------------------------------------------------------------

def _artifacts_beside(uri: str):
    """Where train() puts a sqlite store's artifacts (tracking._default_artifact_location, without importing Keras)."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).expanduser().resolve().parent / "mlartifacts").as_uri()


def ui_argv(cfg: DictConfig) -> list[str]:
    argv = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", cfg.tracking.uri,
            "--host", str(cfg.ui.host), "--port", str(cfg.ui.port), "--workers", str(cfg.ui.workers)]
    root = cfg.tracking.artifact_location or _artifacts_beside(cfg.tracking.uri)
    if root:  # experiments created by the UI get the same artifact place as those created by train
        argv += ["--default-artifact-root", root]
    return argv


def _ui_task(cfg: DictConfig) -> int:
    if cfg.tracking.uri.startswith("sqlite:///"):
        db = Path(cfg.tracking.uri[len("sqlite:///"):])
        if not db.exists():
            fail(f"tracking.uri={cfg.tracking.uri}: no store there yet (train something first, or fix the path)")
    # Own process group: mlflow ui starts workers; stopping only the parent would leave them running.
    # The server's job runner only serves GenAI scorers; off unless asked, so the UI starts faster.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    server = subprocess.Popen(ui_argv(cfg), start_new_session=True, env=env)
    print(f"MLflow UI: http://{cfg.ui.host}:{cfg.ui.port}  (store {cfg.tracking.uri}; Ctrl-C stops it)", flush=True)

    def stop(*_):
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(143)))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even if started with SIGINT ignored
    try:
        return server.wait()
    except KeyboardInterrupt:
        stop()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        return 0
    finally:
        stop()


def ui_command(argv: list[str]) -> int:
    code = {}

    def task(cfg: DictConfig) -> None:
        code["rc"] = _ui_task(cfg)

    run_hydra(task, argv, prog="fashion-lab ui")
    return code.get("rc", 0)
