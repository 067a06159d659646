"""``fashion-lab upload``: a record ``offline.Spool`` kept while the server was away, put into its
store: into its own run, or a new one where the store lacks it. Safe to repeat."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

from fashion_lab.record.client import short_timeouts, tag_default_experiment
from fashion_lab.record.names import EXPERIMENT_KIND, REAPED, TAG
from fashion_lab.record.run import log_params, send


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
