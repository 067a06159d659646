"""One run per ``train()``: ``tracked_run`` opens it, the ``Recorder`` writes it through the log
calls (keeping what a server away could not take), and it always closes FINISHED, FAILED with a
reason, or KILLED. ``tracking.enabled=false`` swaps in a recorder that does nothing."""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from fashion_lab.config import mask_userinfo, run_params
from fashion_lab.record import store_faults
from fashion_lab.record.client import client_for, ensure_experiment, set_tags, short_timeouts
from fashion_lab.record.names import TAG
from fashion_lab.record.owners import reap_orphans, system_tags
from fashion_lab.record.spool_checks import DIGEST_TAG, SECRET, digest
from fashion_lab.record.store import write_artifacts
from fashion_lab.runtime.signals import Terminated, sigterm_raises


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run is recorded FAILED with this reason."""


def log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, mask_userinfo(str(v))) for k, v in params.items()]  # a spooled record's too
    for i in range(0, len(items), 100):  # MLflow's batch limit
        client.log_batch(run_id, params=items[i:i + 100])


def log_metrics(client, run_id: str, metrics: dict[str, float], step: int = 0,
                timestamp: Optional[int] = None) -> None:
    from mlflow.entities import Metric

    now = timestamp or int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


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
    import time

    from mlflow.entities import DatasetInput, InputTag

    inputs = [DatasetInput(dataset_entity(split), tags=[InputTag("mlflow.data.context", split["context"])])
              for split in splits]
    for attempt in range(3):
        try:
            return client.log_inputs(run_id, datasets=inputs)
        except Exception as error:  # noqa: BLE001 - only the race below is retried
            # Parallel jobs logging the same dataset race to create its row (a unique key on a server's
            # database); the loser's retry finds the row and links it.
            if attempt == 2 or not any(word in str(error) for word in ("UniqueViolation", "UNIQUE constraint",
                                                                       "Duplicate entry", "duplicate key")):
                raise
            time.sleep(0.5 + attempt)


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
        self.sent = 0  # calls that reached the store (params aside): a record begun later lacks them

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
            if self.spool is not None:
                self.spool.sent_elsewhere([{"op": op}])
            self.sent += op != "params"
        except Exception as error:
            from fashion_lab.record import offline

            # Only a server can be away and come back; a local store's OSError (a full disk) is a failure.
            remote = str(self.identity.get("uri", "")).startswith(("http://", "https://"))
            if not (remote and offline.unreachable(error)):
                fault = store_faults.unwritable(error, self.identity.get("uri"), f"the run's {op}")
                if fault is None:
                    raise
                raise fault from None  # one line: the whole SQL statement is no help to anyone
            if self.spool is None:
                folder = offline.spool_folder(self.offline_dir, self.run_id)
                self.spool = offline.Spool(folder, self.identity, not_kept=self.sent)
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

    def close(self, status: str, reason: Optional[str]) -> Optional[Path]:
        """Send the run's end (failure tag, status); what the store cannot take is kept in the spool.
        Returns the spool folder when the end could not reach the store."""
        calls = store_faults.end_calls(status, reason, TAG + "failure")
        for i, (op, kwargs) in enumerate(calls):
            try:
                self._send(op, **kwargs)
            except Exception as error:  # noqa: BLE001 - the end is kept, never lost to a second error
                if not self.active:
                    raise
                from fashion_lab.record import offline

                folder = offline.keep_end(self.offline_dir, self.identity, calls[i:], error)
                self.spool = offline.Spool.load(folder)
                self.spool.reason = store_faults.cause(error) or failure_reason(error).splitlines()[0][:300]
                break
        return self.finish(quiet=True)

    def finish(self, quiet: bool = False) -> Optional[Path]:
        """Last try to send what was kept; returns the record's folder if the store is still away.
        ``quiet``: a local store's fault is said by the error it raised, not here."""
        if self.spool is None or not self.spool.calls:
            return None
        if self.spool.flush(self._apply):
            print("fashion-lab: tracking store back; everything kept was sent", file=sys.stderr)
            return None
        if not (quiet and self.spool.local):
            print(self.spool.message(), file=sys.stderr)
        return self.spool.folder


def failure_reason(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt) and not str(error):
        return "interrupted (Ctrl-C)"  # not "KeyboardInterrupt: ", which reads like a crash in the UI
    return f"{type(error).__name__}: {error}"[:5000]


def failure_line(error: BaseException) -> str:
    """A failed run's one line: the reason, and where its record is kept if the store could not take it."""
    if not isinstance(error, store_faults.StoreUnwritable):
        return (failure_reason(error).splitlines() or [type(error).__name__])[0]
    if error.kept_in is not None:
        return (f"{error}; the run is recorded FAILED with this reason in {error.kept_in} "
                f"(once the store can be written: fashion-lab upload {error.kept_in})")
    return f"{error}; " + ("the run is recorded FAILED with this reason" if error.closed else "no run was created")


@contextlib.contextmanager
def tracked_run(cfg, *, run_name: str, tags: dict[str, str],
                parent_run_id: Optional[str] = None) -> Iterator[Recorder]:
    """Open one run, log the flattened config, and close it with the right status whatever happens."""
    if not cfg.tracking.enabled:
        with sigterm_raises():
            yield Recorder()
        return
    store_faults.quiet_database_error_logs()
    client = client_for(cfg.tracking)
    all_tags = {**system_tags(), **tags}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    all_tags = {k: mask_userinfo(str(v)) for k, v in all_tags.items()}  # the recorded command names tracking.uri
    secret = secrets.token_hex(16)  # only a record kept on disk holds it: the proof it made this run
    all_tags[DIGEST_TAG] = digest(secret)
    try:
        experiment_id = ensure_experiment(client, cfg.tracking)
        reap_orphans(client, experiment_id)
        run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    except Exception as error:
        if (fault := store_faults.unwritable(error, mask_userinfo(cfg.tracking.uri), "a new run")) is None:
            raise
        raise fault from None  # no run exists: nothing is left RUNNING
    params = run_params(cfg)
    # What a kept record needs to be uploaded, even into a store that never saw this run.
    identity = {"uri": cfg.tracking.uri, "experiment": cfg.tracking.experiment, "run_id": run.info.run_id,
                "run_name": run_name, "tags": all_tags, "params": {k: str(v) for k, v in params.items()},
                SECRET: secret}
    recorder = Recorder(client, run.info.run_id, identity, cfg.tracking.offline_dir)
    status, reason, failure = "FINISHED", None, None
    try:
        with sigterm_raises(), short_timeouts(cfg.tracking.uri):
            recorder.params(params)
            yield recorder
    except (KeyboardInterrupt, Terminated) as error:
        status, reason = "KILLED", failure_reason(error) or "interrupted"
        raise
    except BaseException as error:
        status, reason, failure = "FAILED", failure_reason(error), error
        raise
    finally:
        with short_timeouts(cfg.tracking.uri):
            kept = recorder.close(status, reason)
        if isinstance(failure, store_faults.StoreUnwritable):
            failure.kept_in, failure.closed = kept, True  # the one line the command prints says where
