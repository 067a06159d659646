"""Keep what the tracking server could not take, and upload it later.

While a run trains, the ``Recorder`` (tracking.py) sends each call to the store. When the
store is unreachable, the call goes into a ``Spool`` instead: a folder on local disk with the
run's identity (``run.json``: store, experiment, run id, name, tags and the whole config as
params), the calls in order (``calls.jsonl``) and copies of the artifact folders (weights,
history, config.yaml). Training goes on; later calls retry the store now and then. If the
store is still away when the run ends, the folder is the run's full record and
``fashion-lab upload PATH`` puts it into the store once it is back.

No MLflow here: the calls are replayed through functions of tracking.py.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

from fashion_lab.config import mask_userinfo
from fashion_lab.record.spool_checks import CALLS_FILE, RUN_FILE

RETRY_SECONDS = 30.0   # while away, try the store again at most this often (each try may wait a timeout)


_UNREACHABLE = re.compile(r"failed with exception|failed with error code 5\d\d|Max retries exceeded|"
                          r"Connection (refused|reset|aborted)|timed? ?out", re.IGNORECASE)


def unreachable(error: BaseException) -> bool:
    """True when ``error`` says the store could not be reached (not that it refused the call)."""
    if isinstance(error, (OSError, TimeoutError)):
        return True
    if type(error).__module__.startswith(("requests", "urllib3")):
        return True
    return bool(_UNREACHABLE.search(str(error)[:2000]))


class Spool:
    """The calls one run could not send, kept in ``folder`` in order, replayed by ``flush``."""

    def __init__(self, folder: Path, identity: dict[str, Any], not_kept: int = 0):
        """``not_kept``: the calls the run sent to its store before this record began (params aside:
        run.json holds them); a store without the run gets only what the record holds."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # upload never reads the URI (the command names the store): kept for people, without a password
        self._identity = {**_masked(identity), "uri": mask_userinfo(str(identity.get("uri", ""))),
                          "not_kept": not_kept}
        self._write_identity()
        self.calls: list[dict[str, Any]] = []
        self.last_try = time.monotonic()
        self.reason = ""

    @classmethod
    def load(cls, folder: Path) -> "Spool":
        """This process's own record, reopened to add to it (a run's end kept after its calls)."""
        spool = cls.__new__(cls)
        spool.folder, spool.reason, spool.last_try = Path(folder), "", 0.0
        spool._identity = json.loads((spool.folder / RUN_FILE).read_text())
        path = spool.folder / CALLS_FILE
        spool.calls = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
            if path.exists() else []
        return spool

    @property
    def identity(self) -> dict[str, Any]:
        return json.loads((self.folder / RUN_FILE).read_text())

    def _write_identity(self) -> None:
        partial = self.folder / f".{RUN_FILE}.partial"
        partial.write_text(json.dumps(self._identity, indent=1, default=str))
        partial.replace(self.folder / RUN_FILE)

    def keep(self, op: str, kwargs: dict[str, Any], error: Optional[BaseException] = None) -> None:
        """Add one call; an artifact folder is copied now (the caller's folder is temporary)."""
        if error is not None and not self.reason:
            self.reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        if op == "artifacts":
            target = self.folder / f"artifacts-{len(list(self.folder.glob('artifacts-*')))}"
            shutil.copytree(kwargs["directory"], target)
            kwargs = {"directory": target.name}  # relative: the record can be moved before upload
        call = {"op": op, "kwargs": _masked(kwargs), "time": time.time()}
        self.calls.append(call)
        with open(self.folder / CALLS_FILE, "a") as out:  # written through: a later crash loses nothing
            out.write(json.dumps(call, default=str) + "\n")

    def sent_elsewhere(self, calls: list[dict[str, Any]]) -> None:
        """``calls`` reached the run's store and are not kept: a store without the run will lack them."""
        count = sum(c["op"] != "params" for c in calls)  # run.json holds the params
        if count:
            self._identity["not_kept"] += count
            self._write_identity()

    def due(self) -> bool:
        return time.monotonic() - self.last_try >= RETRY_SECONDS

    def flush(self, send: Callable[[str, dict[str, Any]], None]) -> bool:
        """Send the kept calls in order; stop at the first that fails. True when none are left."""
        self.last_try = time.monotonic()
        sent = 0
        try:
            for call in self.calls:
                kwargs = dict(call["kwargs"])
                if call["op"] == "artifacts":
                    kwargs["directory"] = self.folder / kwargs["directory"]
                send(call["op"], kwargs)
                sent += 1
        except Exception as error:  # noqa: BLE001 - kept for the next try
            from fashion_lab.record.store_faults import cause

            if not (unreachable(error) or cause(error)):  # away, or full / read-only: both may come back
                raise
            return False
        finally:
            if sent:
                self.sent_elsewhere(self.calls[:sent])
                self.calls = self.calls[sent:]
                (self.folder / CALLS_FILE).write_text("".join(json.dumps(c, default=str) + "\n"
                                                              for c in self.calls))
        return True

    @property
    def local(self) -> bool:
        """The record's store is a local one (a fault of its disk kept it here, not a server away)."""
        return not str(self.identity.get("uri", "")).startswith(("http://", "https://"))

    def message(self) -> str:
        if self.local:
            return (f"fashion-lab: the store {self.identity.get('uri')} could not be written ({self.reason or 'a fault'}); "
                    f"the run's end is kept in {self.folder}; once the store can be written: "
                    f"fashion-lab upload {self.folder}")
        return (f"fashion-lab: the tracking server {self.identity.get('uri')} could not be reached "
                f"({self.reason or 'unreachable'}); the run's record (config, history, metrics, weights, "
                f"status) is kept in {self.folder}; once the server is back, upload it with: "
                f"fashion-lab upload {self.folder} tracking.uri={self.identity.get('uri')}")


def _masked(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the userinfo of every URI in them masked (params and tags name tracking.uri)."""
    return {k: _masked(v) if isinstance(v, dict) else mask_userinfo(v) for k, v in values.items()}


def keep_end(offline_dir: str, identity: dict[str, Any], calls: list[tuple[str, dict[str, Any]]],
             error: BaseException) -> Path:
    """Keep the calls that close a run (its failure tag, its status) in a spool folder, for ``upload``."""
    folder = spool_folder(offline_dir, identity["run_id"])
    spool = Spool(folder, identity) if not (folder / RUN_FILE).exists() else Spool.load(folder)
    for op, kwargs in calls:
        spool.keep(op, kwargs, error)
    return folder


def spool_folder(offline_dir: str, run_id: str) -> Path:
    return Path(offline_dir).expanduser().absolute() / run_id


# --- fashion-lab upload ------------------------------------------------------------------------

def records(paths: list[Path]) -> list[Path]:
    """Every record folder under ``paths`` (a record itself, or a folder of them)."""
    found = []
    for path in paths:
        if (path / RUN_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p.parent for p in path.glob(f"*/{RUN_FILE}"))
    return found
