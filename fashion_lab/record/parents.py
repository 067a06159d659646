"""Sweeps and searches: one parent run, its points/trials as children. The parent is opened once
by the launching process, found and resumed by a rerun of the same command, and closed with the
sweep's summary; its children carry its tags so reports find their sweep without reading it."""

from __future__ import annotations

import socket
import secrets
import sys
from typing import Any, Callable, Optional

from fashion_lab.config import mask_userinfo
from fashion_lab.record.client import client_for, ensure_experiment, set_tags
from fashion_lab.record.lease import CAMPAIGN_KEY, Lease, check_free, claim, decide, release
from fashion_lab.record.names import SHARED_VIEW, TAG
from fashion_lab.record.owners import commit_tags, process_id, system_tags
from fashion_lab.record.run import failure_line, send
from fashion_lab.record.offline import keep_end
from fashion_lab.record.store_faults import end_calls, unwritable
from fashion_lab.record.run_record import RunRecord, run_record
from fashion_lab.record.spool_checks import DIGEST_TAG, SECRET, digest

# This process's proof for each parent it opened or took over: a parent's end kept in the spool (a store
# that turned unwritable) is uploaded only into the run whose digest tag it matches.
_SECRETS: dict[str, str] = {}


def open_parent_run(tracking_cfg, *, name: str, role: str, strategy: str, sweep_name: str,
                    swept_keys: list[str], definition: str, tags: Optional[dict[str, str]] = None) -> str:
    """Create the experiment (once) and the parent run of a sweep or search; returns its run id.

    Called once in the launching process before any point starts, so parallel points never
    race to create either. ``definition`` (YAML text) is stored as the parent's ``sweep.yaml``.
    """
    client = client_for(tracking_cfg)
    experiment_id = ensure_experiment(client, tracking_cfg)
    tags = {
        TAG + "role": role,                      # "sweep" (Hydra grid) or "search" (KerasTuner)
        TAG + "strategy": strategy,
        TAG + "sweep_name": sweep_name,
        TAG + "swept_keys": ",".join(swept_keys),
        TAG + "host": socket.gethostname(),
        TAG + "owner": process_id(),
        **system_tags(),
        **commit_tags(),
        **(tags or {}),
    }
    secret = secrets.token_hex(16)
    tags = {**{k: mask_userinfo(str(v)) for k, v in tags.items()}, DIGEST_TAG: digest(secret)}
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    run_id = run.info.run_id
    _SECRETS[run_id] = secret
    set_tags(client, run_id, {TAG + "sweep_id": run_id})
    client.set_experiment_tag(experiment_id, SHARED_VIEW + run_id, sweep_view(swept_keys))
    client.log_text(run_id, mask_userinfo(definition), "sweep.yaml")  # its base overrides may name tracking.uri
    return run_id


def sweep_view(swept_keys: list[str]) -> str:
    """A runs-table view (the UI's shared view state): the swept params and the key metrics as columns, the
    points ordered by validation accuracy."""
    import json

    params = [k if "." in k else f"{k}.name" for k in swept_keys]  # a group choice is logged as <group>.name
    columns = [f"params.`{p}`" for p in dict.fromkeys(params + ["trainer.seed"])] + [
        f"metrics.`{m}`" for m in ("test_accuracy", "best_val_accuracy", "best_epoch")] + ["attributes.`Duration`"]
    # Ordered by the objective: the UI nests children under their parent only while runs are ordered by
    # date (or not at all), and a shared view cannot say "expanded", so the order is what shows every point
    # as a row. The order lives in the view, not the link: a link with its own order skips the view.
    return json.dumps({"orderByKey": "metrics.`best_val_accuracy`", "orderByAsc": False, "selectedColumns": columns, "columnOrder": [], "columnWidths": {}, "runsHiddenMode": "SHOW_ALL",
                       "viewMaximized": False, "runListHidden": False, "isAccordionReordered": False,
                       "useGroupedValuesInCharts": True, "hideEmptyCharts": True})


def child_tags(parent_run_id: str, sweep_name: str, role: str, strategy: str) -> dict[str, str]:
    """Tags every point/trial carries, so reports find its sweep without reading the parent."""
    return {"mlflow.parentRunId": parent_run_id, TAG + "sweep_id": parent_run_id,
            TAG + "sweep_name": sweep_name, TAG + "role": role, TAG + "strategy": strategy}


def close_parent_run(tracking_cfg, run_id: str, *, status: str, summary: dict[str, Any], text: str = "") -> None:
    """End the parent: ``text`` as its summary.txt, numeric summary values as metrics, the rest tags
    (``summary.*``); this process's lease on it is released. A store that cannot take it (full, read-only):
    the end is kept in the local spool for ``fashion-lab upload``, and one line says so."""
    numbers = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    texts = {f"{TAG}summary.{k}": v for k, v in summary.items() if k not in numbers}
    calls = ([("metrics", {"metrics": numbers})] if numbers else []) + ([("tags", {"tags": texts})] if texts else [])
    calls += end_calls(status, None, TAG + "failure")
    client = client_for(tracking_cfg)
    try:
        if text:
            client.log_text(run_id, text, "summary.txt")
    except OSError as error:  # a full or read-only artifact folder: the parent still closes
        print(f"fashion-lab: summary.txt not recorded: {failure_line(error)}", file=sys.stderr)
    for i, (op, kwargs) in enumerate(calls):
        try:
            send(client, run_id, op, kwargs)
        except Exception as error:
            if (fault := unwritable(error, mask_userinfo(tracking_cfg.uri), f"the end of parent run {run_id}")) is None:
                raise
            identity = {"uri": mask_userinfo(tracking_cfg.uri), "experiment": tracking_cfg.experiment,
                        "run_id": run_id, "run_name": None, "tags": {}, "params": {}, SECRET: _SECRETS.get(run_id)}
            kept = keep_end(tracking_cfg.offline_dir, identity, calls[i:], error)
            print(f"fashion-lab: {fault}; its end is kept in {kept} (once the store can be written: "
                  f"fashion-lab upload {kept})", file=sys.stderr)
            return
    release(client, run_id)


def filter_safe(key: str) -> str:
    """A campaign key MLflow's search filter can quote: as it is (what earlier versions recorded), or, where it
    holds a quote (a search folder named so), its digest; the filter has no escape for a quote."""
    return key if "'" not in key and "\\" not in key else "sha256:" + digest(key)


def find_parent(tracking_cfg, campaign_key: str) -> Optional[RunRecord]:
    """The newest parent run recorded for this sweep command (tag ``campaign_key``), or None."""
    client = client_for(tracking_cfg)
    found = client.get_experiment_by_name(tracking_cfg.experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], f"tags.`{TAG}campaign_key` = '{filter_safe(campaign_key)}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return run_record(runs[0]) if runs else None


def resume_parent(tracking_cfg, run_id: str, tags: dict[str, Any]) -> None:
    """Mark a parent RUNNING again, owned by this process; a killed-owner note no longer applies."""
    client = client_for(tracking_cfg)
    client.update_run(run_id, status="RUNNING")
    if TAG + "failure" in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, TAG + "failure")
    secret = secrets.token_hex(16)  # the new owner's proof (the last owner's secret died with it)
    set_tags(client, run_id, {TAG + "owner": process_id(), **tags, DIGEST_TAG: digest(secret)})
    _SECRETS[run_id] = secret


def hold_parent(tracking_cfg, campaign_key: str, what: str, restart: bool,
                create: Callable[[dict[str, str]], str]) -> tuple[str, bool, list[str]]:
    """This command's hold on its sweep: (parent run id, whether it resumes an earlier parent, the stale leases
    it took over). The newest parent under ``campaign_key`` is claimed, or ``create(tags)`` makes one with the
    claim among its tags; ``lease.Busy`` when a live command holds the sweep (nothing changed then)."""
    lease, campaign_key = Lease.mine(), filter_safe(campaign_key)
    check_free(tracking_cfg, campaign_key, what)  # before anything is written
    found = None if restart else find_parent(tracking_cfg, campaign_key)
    if found is not None:
        claim(tracking_cfg, found.run_id, lease)
    else:  # the claim is born with the run: a rival sees both at once
        lease.run_id = create({CAMPAIGN_KEY: campaign_key, lease.tag: lease.value()})
    return lease.run_id, found is not None, decide(tracking_cfg, campaign_key, lease, what, created=found is None)
