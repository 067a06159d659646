"""``fashion-lab upload``: a record kept by ``offline.Spool`` put into the store the command names.

The record is data: ``spool_checks.read_record`` checks it whole before anything is sent, and the
store it names in run.json is never used. It goes into the run it made, proved by the digest of its
secret tagged on that run, or into a new run it makes (tagged the same way); never into another.
How far it got in a store is a tag on that run there (``fashion_lab.spool_sent``), so a repeat sends
nothing twice, and ``uploaded.json`` lists the stores it went to."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

from fashion_lab.config import mask_userinfo
from fashion_lab.record.client import _default_artifact_location, client_for, short_timeouts, tag_default_experiment
from fashion_lab.record.names import EXPERIMENT_KIND, REAPED, TAG
from fashion_lab.record.run import log_params, send
from fashion_lab.record.spool_checks import DIGEST_TAG, Record, SpoolError, digest
from fashion_lab.record.store import sqlite_path

SENT_TAG = TAG + "spool_sent"  # on a run a record went into: how many of its calls that store holds
UPLOADED_FILE = "uploaded.json"


@dataclass
class Uploaded:
    run_id: str
    store: str
    line: str  # what was done, in one line


def store_name(uri: str) -> str:
    """The store as shown: no password, a relative sqlite file made absolute."""
    if uri.startswith("sqlite:///") and not sqlite_path(uri).is_absolute():
        uri = f"sqlite:///{sqlite_path(uri).absolute()}"
    return mask_userinfo(uri)


def own_run(client, record: Record, store: str):
    """The run ``record`` made in this store, or None; a run it names but did not make is refused."""
    from mlflow.exceptions import MlflowException

    proof = digest(record.secret)
    try:
        run = client.get_run(record.run_id)
    except MlflowException as error:
        if getattr(error, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
    else:
        if run.data.tags.get(DIGEST_TAG) != proof:
            raise SpoolError(f"{record.folder / 'run.json'} names run {record.run_id}, which {store} holds and "
                             f"this record did not make (no matching {DIGEST_TAG} tag); nothing sent")
        return run
    found = client.get_experiment_by_name(record.experiment)
    runs = client.search_runs([found.experiment_id], f"tags.`{DIGEST_TAG}` = '{proof}'",
                              max_results=1) if found else []
    return runs[0] if runs else None  # made by an earlier upload of this record into this store


def new_run(client, record: Record, uri: str) -> str:
    """A new run for the record in a store that never saw it: its name, tags, params and proof."""
    found = client.get_experiment_by_name(record.experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(
        record.experiment, artifact_location=_default_artifact_location(uri), tags=EXPERIMENT_KIND)
    if found is None:
        tag_default_experiment(client)
    tags = {k: v for k, v in record.tags.items() if k != "mlflow.parentRunId"}  # that parent is elsewhere
    run = client.create_run(experiment_id, run_name=record.run_name,
                            tags={**tags, DIGEST_TAG: digest(record.secret), SENT_TAG: "0"})
    return run.info.run_id  # its params: _upload, which also gives them after a kill before they were all in


def _sent(run) -> Optional[int]:
    """How many of the record's calls the run holds; None if no upload went into it yet."""
    value = run.data.tags.get(SENT_TAG)
    return int(value) if value is not None and value.isdigit() else None


def _replay(client, run_id: str, record: Record, start: int) -> None:
    for number, (op, kwargs) in enumerate(record.calls[start:], start + 1):
        send(client, run_id, op, kwargs)
        client.set_tag(run_id, SENT_TAG, str(number))  # a repeat after an outage resumes here


def _elsewhere(folder: Path, store: str) -> dict[str, str]:
    """The other stores ``uploaded.json`` says this record went to (store -> run id); just for the message."""
    try:
        done = json.loads((folder / UPLOADED_FILE).read_text())
        stores = done.get("stores") or {mask_userinfo(str(done["uri"])): done["run_id"]}  # or an older file's
        return {str(k): str(v) for k, v in stores.items() if k != store}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _note(folder: Path, store: str, run_id: str) -> None:
    stores = {**_elsewhere(folder, store), store: run_id}
    with contextlib.suppress(OSError):  # a read-only record folder: the upload itself is done
        (folder / UPLOADED_FILE).write_text(json.dumps({"stores": stores, "time": time.time()}, indent=1))


def _line(record: Record, store: str, run_id: str, start: Optional[int], made: bool) -> str:
    sent = len(record.calls) - (start or 0)
    if start is not None and sent <= 0:
        line = f"already uploaded {record.folder} to {store} as run {run_id}; nothing sent"
    else:
        after = f", after {start} sent before" if start else ""
        line = f"uploaded {record.folder} to {store} -> run {run_id} ({'a new run; ' if made else ''}" \
               f"{sent} calls sent{after})"
    if run_id != record.run_id and record.not_kept:
        line += (f"; the record is partial: it continues run {record.run_id} of {record.source}, and the first "
                 f"{record.not_kept} calls that run made there (its first epochs) are not in {store}")
    others = _elsewhere(record.folder, store)
    return line + "".join(f"; also uploaded to {other} as run {rid}" for other, rid in others.items())


def _upload(record: Record, uri: str, store: str) -> Uploaded:
    client = client_for(SimpleNamespace(uri=uri))
    run = own_run(client, record, store)
    run_id = run.info.run_id if run else new_run(client, record, uri)
    start = _sent(run) if run else None
    if run is not None and run.data.tags.get(TAG + "failure", "").endswith(REAPED):
        # Closed by reap_orphans while its record waited on disk; the record says how it ended.
        client.delete_tag(run_id, TAG + "failure")
    line = _line(record, store, run_id, start, made=run is None)
    if run_id != record.run_id and not start:  # a run an upload made: its params first, again if a kill cut them
        log_params(client, run_id, record.params)  # (MLflow takes a param again when its value is the same)
    _replay(client, run_id, record, start or 0)
    return Uploaded(run_id, store, line)


def upload_record(record: Record, uri: str) -> Uploaded:
    """Put one checked record into the store at ``uri`` (the command's, never run.json's). Safe to repeat."""
    from fashion_lab.record import offline

    store = store_name(uri)
    with short_timeouts(uri):  # a server still away is reported in seconds, not minutes
        try:
            done = _upload(record, uri, store)
        except Exception as error:  # noqa: BLE001
            if offline.unreachable(error):
                raise ConnectionError(f"the tracking server {store} is still unreachable") from None
            raise
    _note(record.folder, store, done.run_id)
    return done

