"""The MLflow client of a tracking config: the store (its tables created once, under a lock), the
experiment (created once), experiment ids and single runs by id, tags, and short timeouts against a
server while a run trains."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator, Optional

from fashion_lab.config import mask_userinfo
from fashion_lab.record.names import EXPERIMENT_KIND
from fashion_lab.record.run_record import run_record

# MLflow draws a download progress bar whenever tqdm is installed (optuna brings it): a command's
# output stays its own lines (a refusal is one line), unless the user asks for the bar.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
from fashion_lab.record.store import sqlite_path  # the one sqlite URI parser


def _default_artifact_location(uri: str) -> Optional[str]:
    """Artifacts beside a sqlite file, so a store in a temp dir never writes into the cwd."""
    if not uri.startswith("sqlite:///"):
        return None
    return (sqlite_path(uri).resolve().parent / "mlartifacts").as_uri()


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
    db = sqlite_path(tracking_cfg.uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = open(f"{db}.lock", "a")
    except OSError:  # a folder turned read-only (or full): an existing store can still be read
        if not db.exists():
            raise
        return mlflow.MlflowClient(tracking_uri=tracking_cfg.uri)
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not db.exists():
            _create_whole(db)
        client = mlflow.MlflowClient(tracking_uri=tracking_cfg.uri)
        client.search_experiments(max_results=1)  # an older store's tables are upgraded while holding the lock
    return client


def _create_whole(db) -> None:
    """A new sqlite store, built under a temporary name and renamed into place once its migrations
    have all run: a command killed in its first second leaves no half-migrated store behind (every
    later command would fail on it), only a ``.creating`` file the next creation removes."""
    import mlflow

    for stale in db.parent.glob(f".{db.name}.creating-*"):  # a killed creation's (we hold the lock)
        stale.unlink(missing_ok=True)
    building = db.with_name(f".{db.name}.creating-{os.getpid()}")
    try:
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{building.absolute()}").search_experiments(max_results=1)
        os.replace(building, db)
    finally:
        building.unlink(missing_ok=True)


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



def set_tags(client, run_id: str, tags: dict[str, Any]) -> None:
    from mlflow.entities import RunTag

    client.log_batch(run_id, tags=[RunTag(k, mask_userinfo(str(v))) for k, v in tags.items()])


class NotInStore(LookupError):
    """The asked-for experiment or sweep is not in the store; the message says what is."""



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
    """(client, RunRecord) for a run id; NotInStore when the store has no such run."""

    from mlflow.exceptions import MlflowException

    store = client(uri)
    try:
        return store, run_record(store.get_run(run_id))
    except MlflowException:
        raise NotInStore(f"run {run_id!r} not found in {uri}; list runs with `fashion-lab report` or the UI") from None



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
