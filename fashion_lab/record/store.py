"""Fail-fast checks of the tracking store, before any data loads and before any run exists.

``check_store(cfg.tracking, ...)`` answers every store problem in one line naming the key and
the value: a malformed or unknown URI, an empty experiment name, a sqlite file that is empty,
truncated or not an MLflow store, a directory that cannot be written, a server or database
that does not answer within seconds, and (for reading commands) a store that does not exist,
which a reading command must not create. It never imports MLflow: urllib, sqlite3, sockets.

``write_artifacts`` copies a run's files into a local artifact store atomically, so a full
disk leaves no half-written file that looks complete.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import sqlite3
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

from fashion_lab.config import ConfigError
from fashion_lab.record.store_schema import schema_problem

PROBE_SECONDS = 3.0  # how long a server or database may take to answer the probe
SQLITE_MAGIC = b"SQLite format 3\x00"
QUICK_CHECK_BYTES = 64 * 1024 * 1024  # a full page scan of a store up to this size takes well under a second
ALLOWED = ("sqlite:///relative/path.db or sqlite:////absolute/path.db (an embedded store), "
           "http(s)://host[:port] (an MLflow server), postgresql://user@host[:port]/db, "
           "or file:///directory")
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}


class StoreError(ConfigError):
    """The configured store cannot be used; the message names the key, the value and why."""


class NoStoreError(StoreError):
    """A reading command was pointed at a store that does not exist (and must not create it)."""


def _refuse(key: str, value: Any, why: str, kind: type = StoreError) -> StoreError:
    return kind(f"{key}={value!r} {why}")


def check_store(tracking_cfg, *, must_exist: bool = False, write: bool = True) -> None:
    """Raise StoreError unless the store of ``tracking_cfg`` can be used as asked.

    ``must_exist``: a reading command (report, reproduce, ui) refuses a missing store instead of
    creating an empty one. ``write``: the command will record runs, so the store must be writable.
    """
    if not tracking_cfg.enabled:
        return
    name = tracking_cfg.experiment
    if name is None or not str(name).strip():
        raise _refuse("tracking.experiment", name, "is not allowed: give a non-empty experiment name")
    uri = "" if tracking_cfg.uri is None else str(tracking_cfg.uri)
    if not uri.strip():
        raise _refuse("tracking.uri", uri, f"is not allowed: the URI is empty; use {ALLOWED}")
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme == "sqlite":
        _check_sqlite(uri, must_exist, write)
    elif scheme in ("http", "https"):
        _probe_http(uri)
        _check_login(uri)
    elif scheme.split("+")[0] in DATABASE_PORTS:
        _probe_database(uri)
    elif scheme == "file" or scheme == "":
        _check_file_store(uri, must_exist, write)
    else:
        raise _refuse("tracking.uri", uri, f"is not allowed: unknown scheme {scheme + '://'!r}; use {ALLOWED}")


# --- sqlite -------------------------------------------------------------------------------------

def sqlite_path(uri: str) -> Path:
    """The file of a ``sqlite:///`` URI (relative to the current directory unless it starts with /)."""
    return Path(uri[len("sqlite:///"):].split("?", 1)[0]).expanduser()


def _check_sqlite(uri: str, must_exist: bool, write: bool) -> None:
    if not uri.startswith("sqlite:///") or uri in ("sqlite:///", "sqlite:///:memory:"):
        raise _refuse("tracking.uri", uri, "is not allowed: a sqlite URI takes three slashes and a file, "
                      "sqlite:///relative/path.db or sqlite:////absolute/path.db")
    db = sqlite_path(uri)
    if not db.exists():
        if must_exist:
            raise _refuse("tracking.uri", uri, f"has no store: {db} does not exist (nothing recorded there "
                          "yet: train something first, or fix the path); reading commands never create one",
                          NoStoreError)
        if write:
            parent = _existing_ancestor(db.parent)
            problem = _unwritable(parent)
            if problem:
                raise _refuse("tracking.uri", uri, f"cannot be created: directory {parent} is not "
                              f"writable ({problem})")
        return
    problem = sqlite_problem(db)
    if problem:
        raise _refuse("tracking.uri", uri, f"is not a usable MLflow store: {db} {problem}")
    if write:
        problem = _unwritable(db.parent) or (None if os.access(db, os.W_OK) else "file is read-only")
        if problem:
            raise _refuse("tracking.uri", uri, f"is read-only: runs cannot be recorded in {db} ({problem})")


def sqlite_problem(db: Path) -> Optional[str]:
    """None for a readable MLflow sqlite store; else what is wrong with the file."""
    if db.is_dir():
        return "is a directory, not a file"
    size = db.stat().st_size
    if size == 0:
        return ("is an empty (0-byte) file, not a store; delete it to start a new store there, "
                "or point tracking.uri at the right file")
    with open(db, "rb") as f:
        header = f.read(100)
    if not header.startswith(SQLITE_MAGIC):
        return "is not an SQLite database (wrong header)"
    # Header bytes 16-17: page size (1 means 65536); 28-31: pages in the database. A file
    # shorter than that was truncated (a copy cut short, a full disk).
    page_size = int.from_bytes(header[16:18], "big") or 1
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if pages and size < pages * page_size:
        return f"is truncated: {size:,} bytes, its header says {pages * page_size:,}"
    try:
        connection = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=PROBE_SECONDS)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            revisions = ([row[0] for row in connection.execute("SELECT version_num FROM alembic_version")]
                         if "alembic_version" in tables else [])
            if size <= QUICK_CHECK_BYTES:
                verdict = connection.execute("PRAGMA quick_check(1)").fetchone()[0]
                if verdict != "ok":
                    return f"is corrupt ({verdict})"
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        return f"is corrupt or unreadable ({error})"
    if not {"experiments", "runs", "alembic_version"} <= tables:
        return "is an SQLite database but not an MLflow store (no experiments/runs tables)"
    return schema_problem(db, revisions)


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _unwritable(directory: Path) -> Optional[str]:
    """None when a file can be created in ``directory`` (tried for real: root ignores permissions,
    not read-only mounts); else the reason."""
    if not directory.is_dir():
        return f"{directory} is not a directory"
    try:
        fd, name = tempfile.mkstemp(prefix=".fashion-lab-probe-", dir=directory)
    except OSError as error:
        return error.strerror or str(error)
    os.close(fd)
    os.unlink(name)
    return None


# --- file stores --------------------------------------------------------------------------------

def _check_file_store(uri: str, must_exist: bool, write: bool) -> None:
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
        raise _refuse("tracking.uri", uri, f"is not allowed: a file URI names a local directory; use {ALLOWED}")
    directory = Path(urllib.parse.unquote(parts.path) if parts.scheme else uri).expanduser()
    if directory.exists() and not directory.is_dir():
        raise _refuse("tracking.uri", uri, f"is not allowed: {directory} is a file, not a store directory; "
                      f"an embedded store file needs sqlite:///{directory}")
    if not directory.exists() and must_exist:
        raise _refuse("tracking.uri", uri, f"has no store: {directory} does not exist; reading commands "
                      "never create one", NoStoreError)
    if write:
        problem = _unwritable(_existing_ancestor(directory))
        if problem:
            raise _refuse("tracking.uri", uri, f"is read-only: runs cannot be recorded in {directory} ({problem})")


# --- servers and databases ----------------------------------------------------------------------

def _probe_http(uri: str) -> None:
    """An MLflow server answers GET /health within seconds; silence, a refusal or another page does not."""
    parts = urllib.parse.urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname or port == -1:
        raise _refuse("tracking.uri", uri, f"is not allowed: no valid host[:port]; use {ALLOWED}")
    netloc = parts.hostname + (f":{port}" if port else "")  # credentials stay out of the probe
    health = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(health, timeout=PROBE_SECONDS):
            pass  # 200: an MLflow server (its /health needs no login)
    except urllib.error.HTTPError as error:
        if error.code not in (401, 403):  # a login in front of the server still means it is there
            raise _refuse("tracking.uri", uri, f"does not answer like an MLflow server: {health} gave "
                          f"HTTP {error.code}; check the host, port and path") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
            reason = f"no answer within {PROBE_SECONDS:g} s"
        raise _refuse("tracking.uri", uri, f"is unreachable: {reason}; start the tracking server or fix "
                      "the URI") from None


def _check_login(uri: str, timeout: float = 10.0) -> None:
    """Refuse, in one line, a server that refuses this client (HTTP 401/403): one authenticated request
    with the credentials MLflow's client would send (MLFLOW_TRACKING_USERNAME / _PASSWORD or _TOKEN)."""
    request = urllib.request.Request(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    elif os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}")
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError as error:
        if error.code == 401:
            given = f"user {user!r} was refused" if user and password else "no credentials were given"
            raise StoreError(f"tracking.uri={uri}: the server requires a login (HTTP 401) and {given}; set "
                             f"MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD") from None
        if error.code == 403:
            raise StoreError(f"tracking.uri={uri}: user {user!r} may not use this server (HTTP 403); ask its "
                             f"admin for access") from None
    except (urllib.error.URLError, OSError):
        return  # unreachable: _probe_http reports that


def _probe_database(uri: str) -> None:
    parts = urllib.parse.urlsplit(uri)
    try:
        port = parts.port or DATABASE_PORTS[parts.scheme.lower().split("+")[0]]
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise _refuse("tracking.uri", uri, f"is not allowed: no valid host[:port]; use {ALLOWED}")
    try:
        socket.create_connection((parts.hostname, port), timeout=PROBE_SECONDS).close()
    except OSError as error:
        reason = f"no answer within {PROBE_SECONDS:g} s" if isinstance(error, socket.timeout) else error
        raise _refuse("tracking.uri", uri, f"is unreachable: {reason}; start the database or fix the URI") from None


# --- artifacts ----------------------------------------------------------------------------------

def local_artifact_dir(artifact_uri: str) -> Optional[Path]:
    """The directory of a ``file:`` (or plain path) artifact URI; None for remote stores."""
    parts = urllib.parse.urlsplit(artifact_uri)
    if parts.scheme == "file":
        return Path(urllib.parse.unquote(parts.path))
    if parts.scheme == "" and artifact_uri:
        return Path(artifact_uri)
    return None


def write_artifacts(client, run_id: str, directory: Path) -> None:
    """Copy every file of ``directory`` into the run's artifacts, each under a temporary name renamed
    into place only when complete. A failed copy (a full disk) removes its partial file and
    re-raises, so nothing truncated is left looking complete. Remote stores go through the client."""
    target = local_artifact_dir(client.get_run(run_id).info.artifact_uri)
    if target is None:
        client.log_artifacts(run_id, str(directory))
        return
    for source in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        dest = target / source.relative_to(directory)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f".{dest.name}.partial")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
