"""One MLflow run per train(): params, tags, per-epoch metrics, final metrics, artifacts, status.

Calls are explicit at clear boundaries: ``tracked_run`` opens and always closes a
run (FINISHED, FAILED with a reason, or KILLED), ``EpochLogger`` logs one batch of
metrics per epoch. ``tracking.enabled=false`` swaps in a recorder that does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional

import keras

from fashion_lab.config import run_params

TAG = "fashion_lab."  # prefix of every tag fashion-lab writes
PACKAGES = ("fashion-lab", "tensorflow", "keras", "keras-tuner", "mlflow", "hydra-core", "numpy")
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # opens the UI's training view


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C so the run is closed KILLED, not left RUNNING."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run is recorded FAILED with this reason."""


# --- provenance -----------------------------------------------------------------------------

def process_id() -> str:
    """pid plus the process start time, so a reused pid is never mistaken for a live run's owner."""
    pid = os.getpid()
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        start = "0"
    return f"{pid}:{start}"


def _alive(owner: str) -> bool:
    pid, _, start = owner.partition(":")
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
    except (OSError, ValueError):
        try:
            os.kill(int(pid), 0)
            return True
        except (OSError, ValueError):
            return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie: exited, not yet reaped by its (possibly dead) parent
        return False
    return start in ("", "0") or fields[19] == start


def git_commit() -> Optional[str]:
    """HEAD of the git checkout the command runs in, if any."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def provenance_tags(overrides: list[str], seed: int) -> dict[str, str]:
    tags = {
        TAG + "overrides": " ".join(overrides),
        TAG + "command": " ".join(["fashion-lab", "train", *overrides]),
        TAG + "seed": str(seed),
        TAG + "host": socket.gethostname(),
        TAG + "owner": process_id(),
    }
    tags.update({f"{TAG}version.{k}": v for k, v in package_versions().items()})
    commit = git_commit()
    if commit:
        tags[TAG + "git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    return tags


# --- store and experiment -------------------------------------------------------------------

def _default_artifact_location(uri: str) -> Optional[str]:
    """Artifacts beside a sqlite file, so a store in a temp dir never writes into the cwd."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):]).expanduser().resolve()
    return (db.parent / "mlartifacts").as_uri()


def client_for(tracking_cfg):
    """An MlflowClient on the configured store (also sets the fluent API's URI).

    The first touch of a new sqlite file creates its tables with migrations that break when two
    processes (parallel sweep points, a poller) run them at once, so it is serialised by a file lock.
    """
    import fcntl

    import mlflow

    mlflow.set_tracking_uri(tracking_cfg.uri)
    if not tracking_cfg.uri.startswith("sqlite:///"):
        return mlflow.MlflowClient(tracking_uri=tracking_cfg.uri)
    db = Path(tracking_cfg.uri[len("sqlite:///"):]).expanduser()
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{db}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = mlflow.MlflowClient(tracking_uri=tracking_cfg.uri)
        client.search_experiments(max_results=1)  # creates the tables while holding the lock
    return client


def ensure_experiment(client, tracking_cfg) -> str:
    """The experiment's id, created once if missing (safe when parallel workers race)."""
    from mlflow.exceptions import MlflowException

    name = tracking_cfg.experiment
    found = client.get_experiment_by_name(name)
    if found is None:
        location = tracking_cfg.artifact_location or _default_artifact_location(tracking_cfg.uri)
        try:
            return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
        except MlflowException:
            found = client.get_experiment_by_name(name)  # another worker created it first
            if found is None:
                raise
    return found.experiment_id


def reap_orphans(client, experiment_id: str) -> int:
    """Close RUNNING runs whose owning process on this host is gone (e.g. SIGKILL) as KILLED."""
    host = socket.gethostname()
    orphans = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG}host` = '{host}'",
        max_results=1000)
    reaped = 0
    for run in orphans:
        owner = run.data.tags.get(TAG + "owner")
        if owner and not _alive(owner):
            client.set_tag(run.info.run_id, TAG + "failure", f"process {owner} ended without closing the run")
            client.set_terminated(run.info.run_id, status="KILLED")
            reaped += 1
    return reaped


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow's batch limit
        client.log_batch(run_id, params=items[i:i + 100])


def log_metrics(client, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def set_tags(client, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


# --- one run --------------------------------------------------------------------------------

class Recorder:
    """Writes one run. ``run_id`` is None when tracking is off and every call does nothing."""

    def __init__(self, client=None, run_id: Optional[str] = None):
        self.client, self.run_id = client, run_id

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def params(self, params: dict[str, Any]) -> None:
        if self.active:
            log_params(self.client, self.run_id, params)

    def tags(self, tags: dict[str, Any]) -> None:
        if self.active:
            set_tags(self.client, self.run_id, tags)

    def metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        if self.active:
            log_metrics(self.client, self.run_id, metrics, step)

    def artifacts(self, directory: Path) -> None:
        if self.active:
            self.client.log_artifacts(self.run_id, str(directory))

    def dataset(self, name: str, digest: str, source: str, context: str = "training") -> None:
        """The data as an MLflow input, carrying our digest of the source files."""
        if not self.active:
            return
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        meta = MetaDataset(source=HTTPDatasetSource(url=Path(source).absolute().as_uri()
                                                    if source.startswith("/") else source),
                           name=name, digest=digest[:36])
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(
            meta._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])])


class EpochLogger(keras.callbacks.Callback):
    """Logs loss/accuracy/val_*, learning_rate and epoch_seconds at step=epoch, one batch per epoch."""

    def __init__(self, recorder: Recorder):
        super().__init__()
        self.recorder = recorder
        self.epoch_seconds: list[float] = []
        self.learning_rates: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        from fashion_lab.optim import current_learning_rate

        self._lr = current_learning_rate(self.model.optimizer)  # the rate this epoch starts with
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self._start
        self.epoch_seconds.append(seconds)
        self.learning_rates.append(self._lr)
        metrics = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        metrics.update(learning_rate=self._lr, epoch_seconds=seconds)
        self.recorder.metrics(metrics, step=epoch)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception for the duration of a run (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):
        raise Terminated(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def failure_reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:5000]


@contextlib.contextmanager
def tracked_run(cfg, *, run_name: str, tags: dict[str, str],
                parent_run_id: Optional[str] = None) -> Iterator[Recorder]:
    """Open one run, log the flattened config, and close it with the right status whatever happens."""
    if not cfg.tracking.enabled:
        with sigterm_raises():
            yield Recorder()
        return
    client = client_for(cfg.tracking)
    experiment_id = ensure_experiment(client, cfg.tracking)
    reap_orphans(client, experiment_id)
    all_tags = dict(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    recorder = Recorder(client, run.info.run_id)
    status, reason = "FINISHED", None
    try:
        with sigterm_raises():
            recorder.params(run_params(cfg))
            yield recorder
    except (KeyboardInterrupt, Terminated) as error:
        status, reason = "KILLED", failure_reason(error) or "interrupted"
        raise
    except BaseException as error:
        status, reason = "FAILED", failure_reason(error)
        raise
    finally:
        if reason:
            recorder.tags({TAG + "failure": reason})
        client.set_terminated(recorder.run_id, status=status)


# --- sweeps and searches: one parent run, its points/trials as children ---------------------

def open_parent_run(tracking_cfg, *, name: str, role: str, strategy: str, sweep_name: str,
                    swept_keys: list[str], definition: str, tags: Optional[dict[str, str]] = None) -> str:
    """Create the experiment (once) and the parent run of a sweep or search; returns its run id.

    Called once in the launching process before any point starts, so parallel points never
    race to create either. ``definition`` (YAML text) is stored as the parent's ``sweep.yaml``.
    """
    client = client_for(tracking_cfg)
    experiment_id = ensure_experiment(client, tracking_cfg)
    reap_orphans(client, experiment_id)
    run = client.create_run(experiment_id, run_name=name, tags={
        TAG + "role": role,                      # "sweep" (Hydra grid) or "search" (KerasTuner)
        TAG + "strategy": strategy,
        TAG + "sweep_name": sweep_name,
        TAG + "swept_keys": ",".join(swept_keys),
        TAG + "host": socket.gethostname(),
        TAG + "owner": process_id(),
        **({"mlflow.source.git.commit": c, TAG + "git_commit": c} if (c := git_commit()) else {}),
        **(tags or {}),
    })
    run_id = run.info.run_id
    set_tags(client, run_id, {TAG + "sweep_id": run_id})
    client.set_experiment_tag(experiment_id, SHARED_VIEW + run_id, sweep_view(swept_keys))
    client.log_text(run_id, definition, "sweep.yaml")
    return run_id


SHARED_VIEW = "mlflow.sharedViewState."  # the UI's "share view" tags: #/experiments/ID/runs?viewStateShareKey=KEY


def sweep_view(swept_keys: list[str]) -> str:
    """A runs-table view (the UI's shared view state) whose columns are the swept params and the key metrics."""
    import json

    params = [k if "." in k else f"{k}.name" for k in swept_keys]  # a group choice is logged as <group>.name
    columns = [f"params.`{p}`" for p in dict.fromkeys(params + ["trainer.seed"])] + [
        f"metrics.`{m}`" for m in ("test_accuracy", "best_val_accuracy", "best_epoch")] + ["attributes.`Duration`"]
    return json.dumps({"selectedColumns": columns, "columnOrder": [], "columnWidths": {}, "runsHiddenMode": "SHOW_ALL",
                       "viewMaximized": False, "runListHidden": False, "isAccordionReordered": False,
                       "useGroupedValuesInCharts": True, "hideEmptyCharts": True})


def child_tags(parent_run_id: str, sweep_name: str, role: str, strategy: str) -> dict[str, str]:
    """Tags every point/trial carries, so reports find its sweep without reading the parent."""
    return {"mlflow.parentRunId": parent_run_id, TAG + "sweep_id": parent_run_id,
            TAG + "sweep_name": sweep_name, TAG + "role": role, TAG + "strategy": strategy}


def close_parent_run(tracking_cfg, run_id: str, *, status: str, summary: dict[str, Any]) -> None:
    """End the parent: numeric summary values become metrics, the rest tags (``summary.*``)."""
    client = client_for(tracking_cfg)
    numbers = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if numbers:
        log_metrics(client, run_id, numbers)
    texts = {f"{TAG}summary.{k}": v for k, v in summary.items() if k not in numbers}
    if texts:
        set_tags(client, run_id, texts)
    client.set_terminated(run_id, status=status)
