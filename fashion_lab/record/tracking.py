"""The record layer: the only module that imports mlflow.

It owns the client, experiments, tag names, the queries (and their filter strings), the
reaping of runs whose process died, one run per ``train()`` (``tracked_run`` always closes
it FINISHED, FAILED with a reason, or KILLED) and the parent runs of sweeps and searches.
``tracking.enabled=false`` swaps in a recorder that does nothing. Importing it never
imports Keras or TensorFlow (the report reads through it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from fashion_lab.config import run_params
from fashion_lab.record.store import write_artifacts

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


PACKAGE_DIR = Path(__file__).resolve().parent


def _git(folder: Path, *args: str) -> Optional[str]:
    """``git -C folder ARGS``'s output, None where git or the repository is missing."""
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=None)  # the code a process runs is the code it imported at its start
def _checkout() -> Optional[tuple[str, str]]:
    """(top folder, HEAD) of the git checkout that holds fashion-lab's own code, where it runs from one
    (an editable install of a clone). A package that is not tracked there (a venv inside someone's
    repository, a wheel) has none."""
    if _git(PACKAGE_DIR, "ls-files", "--error-unmatch", Path(__file__).name) is None:
        return None
    top, head = _git(PACKAGE_DIR, "rev-parse", "--show-toplevel"), _git(PACKAGE_DIR, "rev-parse", "HEAD")
    return (top, head) if top and head else None


def git_commit() -> Optional[str]:
    """The commit of fashion-lab's code that runs, if it runs from a git checkout."""
    found = _checkout()
    return found[1] if found else None


def workdir_commit(folder: Optional[Path] = None) -> Optional[str]:
    """HEAD of the git repository the command runs in (the user's own sweep files), when that is not
    fashion-lab's checkout: recorded apart, never as fashion-lab's commit."""
    folder = Path(folder or os.getcwd())
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None or (_checkout() or ("",))[0] == top:
        return None
    return _git(folder, "rev-parse", "HEAD")


def system_tags() -> dict[str, str]:
    """MLflow's system tags (``mlflow.user``, ``mlflow.source.name``, ``mlflow.source.type``) as
    ``mlflow.start_run`` sets them; ``client.create_run`` sets none. Git tags come from ``provenance_tags``:
    MLflow's own would take the repository of the script's path, which may be someone else's."""
    from mlflow.tracking.context.default_context import DefaultRunContext

    return DefaultRunContext().tags()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def where_tags() -> dict[str, str]:
    """Where this run ran: the host, and the SLURM job when it runs as one."""
    tags = {TAG + "host": socket.gethostname()}
    env = os.environ
    # An array task (submitit submits arrays) is named ARRAY_TASK, as sacct, scancel and submitit name it.
    job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
           if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID") else env.get("SLURM_JOB_ID"))
    if job:
        tags[TAG + "slurm_job_id"] = job
    return tags


def provenance_tags(overrides: list[str], seed: int) -> dict[str, str]:
    tags = {
        TAG + "overrides": " ".join(overrides),
        TAG + "command": " ".join(["fashion-lab", "train", *overrides]),
        TAG + "seed": str(seed),
        TAG + "owner": process_id(),
        **where_tags(),
    }
    tags.update({f"{TAG}version.{k}": v for k, v in package_versions().items()})
    return {**tags, **commit_tags()}


def commit_tags() -> dict[str, str]:
    """fashion-lab's commit (MLflow's ``mlflow.source.git.commit`` and ``fashion_lab.git_commit``), and the
    working folder's own repository's commit (``fashion_lab.workdir.git_commit``) where it is another one."""
    tags = {}
    if commit := git_commit():
        tags[TAG + "git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    if work := workdir_commit():
        tags[TAG + "workdir.git_commit"] = work
    return tags


# --- store and experiment -------------------------------------------------------------------

def _default_artifact_location(uri: str) -> Optional[str]:
    """Artifacts beside a sqlite file, so a store in a temp dir never writes into the cwd."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):]).expanduser().resolve()
    return (db.parent / "mlartifacts").as_uri()


def client(uri: str):
    """A plain MlflowClient on ``uri`` (readers: results, report)."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


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
            created = client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
            tag_default_experiment(client)
            return created
        except MlflowException:
            found = client.get_experiment_by_name(name)  # another worker created it first
            if found is None:
                raise
    return found.experiment_id


def tag_default_experiment(client) -> None:
    """MLflow's own "Default" experiment (created with the store) opens in the training view too: without
    the kind tag the UI may show its GenAI view there. A kind someone chose is left alone."""
    from mlflow.exceptions import MlflowException

    try:
        default = client.get_experiment("0")
        if default is not None and "mlflow.experimentKind" not in default.tags:
            for key, value in EXPERIMENT_KIND.items():
                client.set_experiment_tag("0", key, value)
    except MlflowException:  # a server without a Default experiment, or no right to tag it
        pass


REAPED = "ended without closing the run"


def reap_orphans(client, experiment_id) -> int:
    """Close RUNNING runs whose owning process on this host is gone (e.g. SIGKILL) as KILLED.
    ``experiment_id`` may be one id or a list of them."""
    ids = [experiment_id] if isinstance(experiment_id, str) else list(experiment_id)
    if not ids:
        return 0
    host = socket.gethostname()
    orphans = client.search_runs(
        ids,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG}host` = '{host}'",
        max_results=1000)
    reaped = 0
    for run in orphans:
        owner = run.data.tags.get(TAG + "owner")
        if owner and not _alive(owner):
            client.set_tag(run.info.run_id, TAG + "failure", f"process {owner} {REAPED}")
            client.set_terminated(run.info.run_id, status="KILLED")
            reaped += 1
    return reaped


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), 100):  # MLflow's batch limit
        client.log_batch(run_id, params=items[i:i + 100])


def log_metrics(client, run_id: str, metrics: dict[str, float], step: int = 0,
                timestamp: Optional[int] = None) -> None:
    from mlflow.entities import Metric

    now = timestamp or int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def set_tags(client, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def log_dataset(client, run_id: str, name: str, digest: str, source: str, context: str = "training") -> None:
    """The data as one MLflow input (the record before per-split datasets; kept so older offline records upload)."""
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.entities import DatasetInput, InputTag

    meta = MetaDataset(source=HTTPDatasetSource(url=Path(source).absolute().as_uri()
                                                if source.startswith("/") else source),
                       name=name, digest=digest[:36])
    client.log_inputs(run_id, datasets=[DatasetInput(
        meta._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", context)])])


def dataset_entity(split: dict[str, Any]):
    """One split (``data.describe_splits``) as an MLflow dataset, in the formats ``mlflow.data.from_numpy``
    writes: a TensorSpec schema, a numpy-style profile, and a source ``mlflow.data.get_source`` reads back.
    Files: a ``local`` source on their folder (``load()`` returns it). Synthetic data has no files: a
    ``code`` source whose tags say so and how to regenerate it."""
    import numpy as np
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.entities import Dataset
    from mlflow.types import Schema, TensorSpec

    def spec(dtype: str, shape: list[int]):
        return Schema([TensorSpec(np.dtype(dtype), (-1, *shape[1:]))])

    schema = TensorDatasetSchema(features=spec(split["features_dtype"], split["features_shape"]),
                                 targets=spec(split["targets_dtype"], split["targets_shape"]))
    if split["directory"]:
        source_type, source = "local", {"uri": split["directory"]}
    else:
        source_type, source = "code", {"tags": {"mlflow.source.name": "fashion_lab.data.make_synthetic",
                                                "mlflow.source.type": "LOCAL", TAG + "data": split["origin"],
                                                **{TAG + k: str(v) for k, v in split["settings"].items()}}}
    profile = {k: split[k] for k in ("num_rows", "features_shape", "targets_shape", "origin", "files",
                                     "source_digest", "settings")}
    return Dataset(name=split["name"], digest=split["digest"][:36], source_type=source_type,
                   source=json.dumps(source), schema=json.dumps(schema.to_dict()), profile=json.dumps(profile))


def log_datasets(client, run_id: str, splits: list[dict[str, Any]]) -> None:
    """The training, validation and test data as MLflow inputs, each tagged with its context."""
    from mlflow.entities import DatasetInput, InputTag

    client.log_inputs(run_id, datasets=[
        DatasetInput(dataset_entity(split), tags=[InputTag("mlflow.data.context", split["context"])])
        for split in splits])


def terminate(client, run_id: str, status: str, end_time: Optional[int] = None) -> None:
    client.set_terminated(run_id, status=status, end_time=end_time)


# The calls a run makes, by name: the Recorder sends them, and replays the ones it had to keep.
SENDERS = {
    "params": log_params,
    "metrics": log_metrics,
    "tags": set_tags,
    "artifacts": write_artifacts,  # each file renamed into place when complete: no truncated file
    "dataset": log_dataset,
    "datasets": log_datasets,
    "terminate": terminate,
}


def send(client, run_id: str, op: str, kwargs: dict[str, Any]) -> None:
    SENDERS[op](client, run_id, **kwargs)


def restore_run(uri: str, identity: dict[str, Any]):
    """The client and run a kept record goes into: its own run, or a new one if the store lacks it."""
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(identity["run_id"])
        if run.data.tags.get(TAG + "failure", "").endswith(REAPED):
            # Closed by reap_orphans while its record waited on disk; the record says how it ended.
            client.delete_tag(run.info.run_id, TAG + "failure")
        return client, run.info.run_id
    except MlflowException as error:
        if getattr(error, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
    # Another store (or the run was lost with it): recreate the run from what the record holds.
    found = client.get_experiment_by_name(identity["experiment"])
    experiment_id = found.experiment_id if found else client.create_experiment(
        identity["experiment"], tags=EXPERIMENT_KIND)
    if found is None:
        tag_default_experiment(client)
    tags = {k: v for k, v in identity.get("tags", {}).items() if k != "mlflow.parentRunId"}
    run = client.create_run(experiment_id, run_name=identity.get("run_name"), tags=tags)
    log_params(client, run.info.run_id, identity.get("params", {}))
    return client, run.info.run_id


@contextlib.contextmanager
def short_timeouts(uri: str) -> Iterator[None]:
    """While a run trains, a call to a server fails within seconds instead of retrying for minutes
    (MLflow's defaults: 7 retries with backoff, 120 s each); the Recorder keeps what failed.
    Values the user set win."""
    if not uri.startswith(("http://", "https://")):
        yield
        return
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def upload_record(folder: Path, uri: Optional[str] = None) -> str:
    """Put one record kept by ``offline.Spool`` into its store; returns the run id. Safe to repeat."""
    from fashion_lab.record import offline

    done = folder / offline.UPLOADED_FILE
    if done.exists():
        return json.loads(done.read_text())["run_id"]
    spool = offline.Spool.load(folder)
    identity = spool.identity
    uri = uri or identity["uri"]
    with short_timeouts(uri):  # a server still away is reported in seconds, not minutes
        try:
            client, run_id = restore_run(uri, identity)
        except Exception as error:  # noqa: BLE001
            if offline.unreachable(error):
                raise ConnectionError(f"the tracking server {uri} is still unreachable") from None
            raise
        if not spool.flush(lambda op, kwargs: send(client, run_id, op, kwargs)):
            raise ConnectionError(f"the tracking server {uri} is still unreachable")
    done.write_text(json.dumps({"run_id": run_id, "uri": uri, "time": time.time()}))
    return run_id


# --- one run --------------------------------------------------------------------------------

class Recorder:
    """Writes one run. ``run_id`` is None when tracking is off and every call does nothing.

    A call the store cannot take (server unreachable) is kept in a local spool
    (fashion_lab/record/offline.py) and retried later, so training never waits on the store.
    """

    def __init__(self, client=None, run_id: Optional[str] = None, identity: Optional[dict[str, Any]] = None,
                 offline_dir: str = "fashion-lab-offline"):
        self.client, self.run_id = client, run_id
        self.identity, self.offline_dir = identity or {}, offline_dir
        self.spool = None

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def _send(self, op: str, **kwargs: Any) -> None:
        if not self.active:
            return
        if self.spool is not None and self.spool.calls:
            if not (self.spool.due() and self.spool.flush(self._apply)):
                self.spool.keep(op, kwargs)
                return
        try:
            self._apply(op, kwargs)
        except Exception as error:
            from fashion_lab.record import offline

            # Only a server can be away and come back; a local store's OSError (a full disk) is a failure.
            remote = str(self.identity.get("uri", "")).startswith(("http://", "https://"))
            if not (remote and offline.unreachable(error)):
                raise
            if self.spool is None:
                folder = offline.spool_folder(self.offline_dir, self.run_id)
                self.spool = offline.Spool(folder, self.identity)
                print(f"fashion-lab: warning: tracking server unreachable ({type(error).__name__}); training "
                      f"goes on, what could not be sent is kept in {folder}", file=sys.stderr)
            self.spool.keep(op, kwargs, error)

    def _apply(self, op: str, kwargs: dict[str, Any]) -> None:
        send(self.client, self.run_id, op, kwargs)

    def params(self, params: dict[str, Any]) -> None:
        self._send("params", params=params)

    def tags(self, tags: dict[str, Any]) -> None:
        self._send("tags", tags=tags)

    def metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        self._send("metrics", metrics=metrics, step=step, timestamp=int(time.time() * 1000))

    def artifacts(self, directory: Path) -> None:
        self._send("artifacts", directory=directory)

    def dataset(self, name: str, digest: str, source: str, context: str = "training") -> None:
        self._send("dataset", name=name, digest=digest, source=source, context=context)

    def datasets(self, splits: list[dict[str, Any]]) -> None:
        """``splits``: ``data.describe_splits(...)``, plain values (an offline record keeps them as JSON)."""
        self._send("datasets", splits=splits)

    def terminate(self, status: str) -> None:
        self._send("terminate", status=status, end_time=int(time.time() * 1000))

    def finish(self) -> Optional[Path]:
        """Last try to send what was kept; returns the record's folder if the store is still away."""
        if self.spool is None or not self.spool.calls:
            return None
        if self.spool.flush(self._apply):
            print("fashion-lab: tracking server back; everything kept was sent", file=sys.stderr)
            return None
        print(self.spool.message(), file=sys.stderr)
        return self.spool.folder


# Ctrl-C or SIGTERM signals this process received and has not acted on yet. A library may catch the
# exception a signal raised and raise its own instead (TensorFlow does while it traces a layer:
# "Failed to convert elements ... to Tensor"), or swallow it; this record lets the run and the sweep
# still unwind as interrupted.
_SIGNALLED: list[BaseException] = []


def raise_terminated(signum, frame):
    """A SIGTERM handler: unwind like Ctrl-C."""
    _SIGNALLED.append(Terminated(f"signal {signum}"))
    raise _SIGNALLED[-1]


def raise_interrupted(signum, frame):
    """A SIGINT handler: Python's own KeyboardInterrupt, remembered."""
    _SIGNALLED.append(KeyboardInterrupt())
    raise _SIGNALLED[-1]


def install_signal_handlers() -> Callable[[], None]:
    """SIGTERM and Ctrl-C raise remembered exceptions (main thread only); returns what restores the
    previous handlers. An ignored SIGINT (a job started with ``cmd &``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, raise_terminated)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, raise_interrupted)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return restore


def take_signal(error: Optional[BaseException] = None) -> Optional[BaseException]:
    """The Ctrl-C or SIGTERM behind ``error``: ``error`` itself, or the signal a library turned into
    ``error`` or swallowed; None if there was none. Once taken, a signal is not reported again."""
    pending = _SIGNALLED[-1] if _SIGNALLED else None
    _SIGNALLED.clear()
    return error if isinstance(error, (KeyboardInterrupt, Terminated)) else pending


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """For the duration of a run, SIGTERM and Ctrl-C unwind it as interrupted, even when a library
    caught the signal's exception and raised another error in its place."""
    restore = install_signal_handlers()
    try:
        yield
    except BaseException as error:
        if (stop := take_signal(error)) is not None and stop is not error:
            raise stop from error
        raise
    finally:
        restore()


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
    all_tags = {**system_tags(), **tags}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    params = run_params(cfg)
    # What a kept record needs to be uploaded, even into a store that never saw this run.
    identity = {"uri": cfg.tracking.uri, "experiment": cfg.tracking.experiment, "run_id": run.info.run_id,
                "run_name": run_name, "tags": all_tags, "params": {k: str(v) for k, v in params.items()}}
    recorder = Recorder(client, run.info.run_id, identity, cfg.tracking.offline_dir)
    status, reason = "FINISHED", None
    try:
        with sigterm_raises(), short_timeouts(cfg.tracking.uri):
            recorder.params(params)
            yield recorder
    except (KeyboardInterrupt, Terminated) as error:
        status, reason = "KILLED", failure_reason(error) or "interrupted"
        raise
    except BaseException as error:
        status, reason = "FAILED", failure_reason(error)
        raise
    finally:
        with short_timeouts(cfg.tracking.uri):
            if reason:
                recorder.tags({TAG + "failure": reason})
            recorder.terminate(status)
            recorder.finish()


# --- sweeps and searches: one parent run, its points/trials as children ---------------------

def open_parent_run(tracking_cfg, *, name: str, role: str, strategy: str, sweep_name: str,
                    swept_keys: list[str], definition: str, tags: Optional[dict[str, str]] = None) -> str:
    """Create the experiment (once) and the parent run of a sweep or search; returns its run id.

    Called once in the launching process before any point starts, so parallel points never
    race to create either. ``definition`` (YAML text) is stored as the parent's ``sweep.yaml``.
    """
    client = client_for(tracking_cfg)
    experiment_id = ensure_experiment(client, tracking_cfg)
    run = client.create_run(experiment_id, run_name=name, tags={
        TAG + "role": role,                      # "sweep" (Hydra grid) or "search" (KerasTuner)
        TAG + "strategy": strategy,
        TAG + "sweep_name": sweep_name,
        TAG + "swept_keys": ",".join(swept_keys),
        TAG + "host": socket.gethostname(),
        TAG + "owner": process_id(),
        **system_tags(),
        **commit_tags(),
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


def sweep_view_url(host: str, port: int, experiment_id: str, parent_run_id: str) -> str:
    """The UI link of a sweep's shared view, in the model-training view: the UI's workflow switch is a
    browser setting that starts on GenAI (sidebar of traces and judges) whatever the experiment's kind,
    and only the experiment's bare page, not its runs page, follows the kind."""
    return (f"http://{host}:{port}/#/experiments/{experiment_id}/runs?viewStateShareKey={parent_run_id}"
            "&workflowType=machine_learning")


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


# --- queries ---------------------------------------------------------------------------------

PAGE = 1000  # runs per search request: the store's maximum page size for sqlite/file/server stores


def role_filter(role: str) -> str:
    return f"tags.`{TAG}role` = '{role}'"


def sweep_filter(parent_run_id: str) -> str:
    """A sweep's runs: its parent and every point or trial (they carry its id)."""
    return f"tags.`{TAG}sweep_id` = '{parent_run_id}'"


class NotInStore(LookupError):
    """The asked-for experiment or sweep is not in the store; the message says what is."""


def _progress(done: int, started: float, stream) -> None:
    if stream is not None:
        print(f"\rreading runs: {done} ({time.perf_counter() - started:.1f} s)", end="", file=stream, flush=True)


def search_all(client, experiment_ids: list[str], filter_string: str = "", progress=sys.stderr,
               order_by: Optional[list[str]] = None) -> list:
    """Every run matching the filter, page by page (a progress line on ``progress`` past one page)."""
    runs, token, started = [], None, time.perf_counter()
    while True:
        page = client.search_runs(experiment_ids, filter_string=filter_string, max_results=PAGE,
                                  page_token=token, order_by=order_by)
        runs.extend(page)
        token = page.token
        if token or len(runs) >= PAGE:
            _progress(len(runs), started, progress)
        if not token:
            break
    if len(runs) >= PAGE and progress is not None:
        print(file=progress)
    return runs


def experiment_ids(client, experiment: Optional[str]) -> list[str]:
    """Ids of the named experiment (or of all experiments when ``experiment`` is None)."""
    if experiment is None:
        return [e.experiment_id for e in client.search_experiments()]
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = [e.name for e in client.search_experiments()]
        raise NotInStore(f"experiment {experiment!r} not found; the store has: {', '.join(names) or 'none'}")
    return [found.experiment_id]



def get_run(uri: str, run_id: str):
    """(client, run) for a run id; NotInStore when the store has no such run."""
    from mlflow.exceptions import MlflowException

    store = client(uri)
    try:
        return store, store.get_run(run_id)
    except MlflowException:
        raise NotInStore(f"run {run_id!r} not found in {uri}; list runs with `fashion-lab report` or the UI") from None


def find_parent(tracking_cfg, campaign_key: str):
    """The newest parent run recorded for this sweep command (tag ``campaign_key``), or None."""
    client = client_for(tracking_cfg)
    found = client.get_experiment_by_name(tracking_cfg.experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], f"tags.`{TAG}campaign_key` = '{campaign_key}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def resume_parent(tracking_cfg, run_id: str, tags: dict[str, Any]) -> None:
    """Mark a parent RUNNING again, owned by this process; a killed-owner note no longer applies."""
    client = client_for(tracking_cfg)
    client.update_run(run_id, status="RUNNING")
    if TAG + "failure" in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, TAG + "failure")
    set_tags(client, run_id, {TAG + "owner": process_id(), **tags})


def children(tracking_cfg, parent_run_id: str, *, run_key: Optional[str] = None, trial_id: Optional[str] = None,
             finished: bool = False) -> list:
    """The parent's child runs, oldest first; optionally one run key's or one trial's, or FINISHED only."""
    client = client_for(tracking_cfg)
    clauses = [sweep_filter(parent_run_id)]
    if run_key:
        clauses.append(f"tags.`{TAG}run_key` = '{run_key}'")
    if trial_id is not None:
        clauses.append(f"tags.`{TAG}trial_id` = '{trial_id}'")
    if finished:
        clauses.append("attributes.status = 'FINISHED'")
    experiment = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs([experiment], " and ".join(clauses), order_by=["attributes.start_time ASC"],
                              max_results=10000)
    return [run for run in runs if run.info.run_id != parent_run_id]


def round_run(tracking_cfg, parent_run_id: str, trial_id: str, execution: str):
    """The FINISHED run of one trial's execution under the parent (the latest if several), or None:
    the run a promoted Hyperband round continues. Executions pair up by index, so each keeps its seed."""
    runs = [run for run in children(tracking_cfg, parent_run_id, trial_id=trial_id, finished=True)
            if run.data.tags.get(TAG + "execution", "0") == str(execution)]
    return runs[-1] if runs else None


WEIGHTS_FILE = "model.weights.h5"  # the weights artifact every run logs (tracking.log_weights)


def download_weights(tracking_cfg, run_id: str, folder: Path) -> Path:
    """The run's weights artifact, downloaded into ``folder``; LookupError when the run logged none."""
    client = client_for(tracking_cfg)
    if WEIGHTS_FILE not in {f.path for f in client.list_artifacts(run_id)}:
        raise LookupError(f"run {run_id} has no {WEIGHTS_FILE} (it ran with tracking.log_weights=false)")
    return Path(client.download_artifacts(run_id, WEIGHTS_FILE, str(folder)))


def min_metric(tracking_cfg, run_id: str, key: str) -> float:
    """The lowest value a metric took over the run's epochs (e.g. val_loss), NaN if never logged."""
    history = client_for(tracking_cfg).get_metric_history(run_id, key)
    return float(min((m.value for m in history), default=float("nan")))


def close_dead_runs(uri: str, experiments=None) -> None:
    """For the reading commands: close as KILLED the runs a killed process left RUNNING in the named
    experiments (all when None), so no report or UI lists them as running. Never fails the command."""
    store = client(uri)
    try:
        found = ([store.get_experiment_by_name(n) for n in experiments] if experiments
                 else store.search_experiments(max_results=1000))
        reap_orphans(store, [e.experiment_id for e in found if e is not None])
    except Exception as error:  # noqa: BLE001 - a read-only store still gets its report
        print(f"fashion-lab: could not close dead runs in {uri}: {type(error).__name__}: "
              f"{str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)


def reap(tracking_cfg) -> int:
    """Close the experiment's runs whose process on this host died (SIGKILL) as KILLED."""
    client = client_for(tracking_cfg)
    return reap_orphans(client, ensure_experiment(client, tracking_cfg))


def registered_version(tracking_cfg, name: str, run_id: str) -> Optional[str]:
    """The version of registered model ``name`` already made from this run, if any."""
    found = client_for(tracking_cfg).search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return found[0].version if found else None


# --- MLflow models: the Keras flavor, loadable and servable by MLflow's own tools ------------

MODEL_NAME = "model"  # the logged model's name in the run (the UI's Models tab)


def _keras_signature(input_shape, num_classes: int):
    """float32 images (N, 28, 28, 1) in, float32 class probabilities (N, 10) out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype("float32"), (-1, *input_shape))]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), (-1, num_classes))]))


def log_keras_model(tracking_cfg, run_id: str, model) -> str:
    """Log ``model`` to the run with MLflow's Keras flavor; returns its ``models:/`` URI.

    ``Model.log(flavor=mlflow.keras, run_id=...)`` is what ``mlflow.keras.log_model`` calls, minus
    the need for an active fluent run (resuming the run would flip its status). The requirements
    are given, not inferred: inference re-imports the model in a subprocess (about 10 s).
    """
    import mlflow
    from mlflow.models import Model

    client = client_for(tracking_cfg)  # also points the fluent API at the configured store
    # The logged model belongs to its run's experiment, which Model.log takes from the fluent API.
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    versions = package_versions()
    requirements = [f"{name}=={versions[name]}" for name in ("tensorflow", "keras", "mlflow") if name in versions]
    # A fashion-lab layer (L2 pooling) loads only where fashion_lab is imported; exported as a TF
    # SavedModel, the network serves anywhere TensorFlow does.
    custom = any(type(layer).__module__.startswith("fashion_lab") for layer in model.layers)
    info = Model.log(artifact_path=None, name=MODEL_NAME, flavor=mlflow.keras, model=model, run_id=run_id,
                     signature=_keras_signature(model.input_shape[1:], model.output_shape[-1]),
                     pip_requirements=requirements, save_exported_model=custom)
    return info.model_uri


def register_model(tracking_cfg, model_uri: str, name: str, *, tags: dict[str, str], description: str) -> str:
    """A new version of registered model ``name`` pointing at a logged MLflow model; returns the version."""
    import mlflow

    client = client_for(tracking_cfg)
    version = mlflow.register_model(model_uri, name, tags=tags)
    client.update_model_version(name, version.version, description=description)
    return version.version


def logged_model_uri(tracking_cfg, run_id: str) -> Optional[str]:
    """``models:/ID`` of the MLflow model a run logged itself (tracking.log_model=true), else None."""
    import mlflow

    client = client_for(tracking_cfg)
    logged = mlflow.search_logged_models(experiment_ids=[client.get_run(run_id).info.experiment_id],
                                         filter_string=f"source_run_id = '{run_id}'", output_format="list")
    return f"models:/{logged[0].model_id}" if logged else None


def download_model_files(tracking_cfg, run_id: str, folder: str) -> tuple[str, str]:
    """(config.yaml, model.weights.h5) of a recorded run, downloaded into ``folder``; LookupError
    when the run kept no weights."""
    client = client_for(tracking_cfg)
    if "model.weights.h5" not in {f.path for f in client.list_artifacts(run_id)}:
        raise LookupError(f"run {run_id} has no model.weights.h5 to rebuild its model from "
                          "(it ran with tracking.log_weights=false); use tracking.log_model=true")
    return (client.download_artifacts(run_id, "config.yaml", folder),
            client.download_artifacts(run_id, "model.weights.h5", folder))
