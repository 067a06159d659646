"""``fashion-lab report | reproduce RUN_ID | ui``: Hydra entry points reading (and re-running) the record."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fashion_lab.cli.commands import fail, run_hydra
from fashion_lab.config import mask_userinfo
from fashion_lab.preflight import is_loopback
from fashion_lab.record.untrusted import UntrustedValue, plain_config
from fashion_lab.runtime.lifeline import die_with_parent, guard_group

# Metrics that measure the machine, not the model: never compared by reproduce.
TIMING = ("train_seconds", "epoch_seconds")


def _preflight(cfg: DictConfig, *, write: bool, missing: str = "") -> None:
    """The reading commands' checks: every setting, and a store that exists (never created here).
    ``missing`` starts the message when there is no store (``run X not found: ``)."""
    from fashion_lab.config import ConfigError
    from fashion_lab.preflight import validate
    from fashion_lab.record.store import NoStoreError, check_store

    try:
        validate(cfg)
        check_store(cfg.tracking, must_exist=True, write=write)
    except NoStoreError as error:
        fail(f"{missing}{error}")
    except ConfigError as error:
        fail(str(error))


# --- report ---------------------------------------------------------------------------------

def _report_task(cfg: DictConfig) -> None:
    from fashion_lab.report.build import NothingToReport, build_report
    from fashion_lab.report.output import UnsafeOutput
    from fashion_lab.record.results import ResultsError
    from fashion_lab.record.tracking import close_dead_runs

    _preflight(cfg, write=False)
    r = cfg.report
    close_dead_runs(cfg.tracking.uri, [r.experiment or cfg.tracking.experiment])
    try:
        folder = build_report(cfg.tracking.uri, r.out, experiment=r.experiment or cfg.tracking.experiment,
                              sweep=r.sweep, metric=r.metric)
    except (ResultsError, NothingToReport, UnsafeOutput) as error:
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
        try:  # plain values only: a planted ${oc.env:...} must never read this machine
            logged = OmegaConf.create(plain_config(Path(path).read_text(), f"run {run_id}'s config.yaml"))
        except (UntrustedValue, ValueError) as error:
            fail(str(error).splitlines()[0])
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


def _continued_start(cfg: DictConfig, original, folder: Path):
    """A run that continued another (a Hyperband round) is reproduced from the same weights and epoch."""
    from fashion_lab.record.tracking import TAG, download_weights
    from fashion_lab.run.train import WarmStart

    earlier = original.tags.get(TAG + "continues")
    if not earlier:
        return None
    try:
        weights = download_weights(cfg.tracking, earlier, folder)
    except Exception as error:  # noqa: BLE001 - the earlier run's weights are gone or were never logged
        fail(f"run {original.run_id} continued run {earlier}, whose weights cannot be read: {error}")
    print(f"continuing run {earlier}'s weights from epoch {int(original.metrics['initial_epoch'])}, as run "
          f"{original.run_id} did")
    return WarmStart(weights, int(original.metrics["initial_epoch"]), earlier)


def _original_and_config(cfg: DictConfig, run_id: str, overrides: list[str]):
    """The run to reproduce and its recorded config with the user's overrides, checked; refused in one line."""
    from fashion_lab.config import ConfigError
    from fashion_lab.preflight import validate
    from fashion_lab.record.tracking import NotInStore, close_dead_runs, get_run

    _preflight(cfg, write=True, missing=f"run {run_id!r} not found: ")
    try:
        client, original = get_run(cfg.tracking.uri, run_id)
    except NotInStore as error:
        fail(str(error))
    close_dead_runs(cfg.tracking.uri, [client.get_experiment(original.experiment_id).name])
    nothing = (f"run {run_id} (status {original.status}) recorded no final metrics: "
               "nothing to compare a reproduction against")
    measured = [m for m in original.metrics if not m.endswith(TIMING)]
    if not measured and "config.yaml" not in {f.path for f in client.list_artifacts(run_id)}:
        fail(nothing)
    run_cfg = recorded_config(client, run_id, cfg)  # a planted ${...} is refused before anything else
    if not measured:
        fail(nothing)
    run_cfg.tracking = cfg.tracking  # record the new run where the user points, not where the old one was
    run_cfg.tracking.run_name = None
    try:  # the user's overrides apply to the recorded config (dotted keys)
        run_cfg = OmegaConf.merge(run_cfg, OmegaConf.from_dotlist(
            [o for o in overrides if not o.startswith(("tracking.", "reproduce.", "hydra."))]))
        validate(run_cfg)
    except (ConfigError, Exception) as error:  # noqa: BLE001 - OmegaConf type errors name key and value
        fail(f"bad override for reproduce: {error}")
    return original, run_cfg


def _same_data(run_cfg: DictConfig, original):
    """The run's data, loaded and checked against the digest it recorded (other data: refused)."""
    from fashion_lab.data import DataError, load_data

    try:
        splits = load_data(run_cfg.data)
    except DataError as error:
        fail(str(error))
    recorded = original.tag("data_digest")
    if recorded and recorded != splits.digest:
        fail(f"local data digest {splits.digest} differs from the run's {recorded}: "
             "the same config would train on different data; refusing to reproduce")
    return splits


def _print_comparison(run_id: str, new_run_id: str, rows, ok: bool, tolerance) -> int:
    if not rows:  # "metrics match" must mean something was compared
        print(f"original run {run_id}, new run {new_run_id}: no metric in common, nothing compared", file=sys.stderr)
        return 1
    print(f"{'metric':<26} {'original':>12} {'reproduced':>12} {'difference':>12}")
    for name, a, b, diff, good in rows:
        print(f"{name:<26} {a:>12.6f} {b:>12.6f} {diff:>+12.2e}{'' if good else '  <- differs'}")
    print(f"original run {run_id}, new run {new_run_id}: "
          + ("metrics match" if ok else f"metrics differ beyond reproduce.tolerance={tolerance}"))
    return 0 if ok else 1


def _reproduce_task(cfg: DictConfig, run_id: str, overrides: list[str]) -> int:
    import tempfile

    from fashion_lab.record.tracking import TAG

    # Checks first, Keras later: a bad id or other data is refused in seconds.
    original, run_cfg = _original_and_config(cfg, run_id, overrides)
    splits = _same_data(run_cfg, original)
    from fashion_lab.run.train import train

    name = f"reproduce {original.name or run_id[:8]}"[:60]
    with tempfile.TemporaryDirectory(prefix="fashion-lab-reproduce-") as folder:
        result = train(run_cfg, overrides=list(overrides), run_name=name,
                       tags={TAG + "reproduces": run_id, TAG + "command": f"fashion-lab reproduce {run_id}"},
                       splits=splits, start=_continued_start(cfg, original, Path(folder)))
    rows, ok = compare(original.metrics, result.metrics, float(cfg.reproduce.tolerance))
    return _print_comparison(run_id, result.run_id, rows, ok, cfg.reproduce.tolerance)


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
    from fashion_lab.record.tracking import close_dead_runs

    _preflight(cfg, write=False)
    close_dead_runs(cfg.tracking.uri)
    # Own process group: mlflow ui starts workers; stopping only the parent would leave them running.
    # The server's job runner only serves GenAI scorers; off unless asked, so the UI starts faster.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    # It dies with this command, even on kill -9: a parent-death signal for the server, a watchdog for its workers.
    server = subprocess.Popen(ui_argv(cfg), start_new_session=True, env=env, preexec_fn=die_with_parent())
    watchdog = guard_group(server.pid)
    if not is_loopback(cfg.ui.host):  # allowed by ui.allow_remote=true (preflight refuses it otherwise)
        print(f"fashion-lab: warning: ui.host={cfg.ui.host!r} serves the store to the network without a login "
              f"(ui.allow_remote=true)", file=sys.stderr)
    print(f"MLflow UI: http://{cfg.ui.host}:{cfg.ui.port}  (store {mask_userinfo(cfg.tracking.uri)}; Ctrl-C stops it)",
          flush=True)

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
        watchdog.stdin.close()  # the watchdog finishes the group's stop and exits


def ui_command(argv: list[str]) -> int:
    code = {}

    def task(cfg: DictConfig) -> None:
        code["rc"] = _ui_task(cfg)

    run_hydra(task, argv, prog="fashion-lab ui")
    return code.get("rc", 0)
