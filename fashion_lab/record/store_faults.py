"""A local store that can no longer be written: a full disk, a file system turned read-only, an I/O
error. Told apart from other store errors, said in one line (``StoreUnwritable``), and the run's end
kept in the local spool when the store cannot take even that, so ``fashion-lab upload`` records it
later: FAILED, with the cause, instead of KILLED "ended without closing the run".

No MLflow here: errors are recognised by errno and by SQLite's own messages.
"""

from __future__ import annotations

import errno
import logging
import re
import time
from pathlib import Path
from typing import Any, Optional

_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT)
# SQLite's words for the same faults, as MLflow passes them up inside its own exception types.
_SQLITE = re.compile(r"database or disk is full|attempt to write a readonly database|disk I/O error|"
                     r"No space left on device|Read-only file system|Disk quota exceeded")


class StoreUnwritable(OSError):
    """The store (or the run's artifact folder) cannot be written; the run is closed FAILED with this
    reason, in the store, or in the spool folder ``kept_in`` when the store cannot take it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.kept_in: Optional[Path] = None   # the spool folder holding the run's end
        self.closed = False                   # the run was closed FAILED (in the store or in kept_in)

    def __str__(self) -> str:
        return self.args[0]


def cause(error: BaseException) -> Optional[str]:
    """The few words saying the store cannot be written ("database or disk is full"), else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StoreUnwritable):
            return str(error)
        if isinstance(error, OSError) and error.errno in _ERRNOS:
            return error.strerror or errno.errorcode[error.errno]
        if found := _SQLITE.search(str(error)[:5000]):
            return found.group(0)
        error = error.__cause__ or error.__context__
    return None


def unwritable(error: BaseException, uri: str, what: str) -> Optional[StoreUnwritable]:
    """``error`` as one line ("the store URI cannot take the run's metrics: database or disk is full"),
    or None when it is another kind of error."""
    if isinstance(error, StoreUnwritable):
        return error
    found = cause(error)
    return StoreUnwritable(f"the store {uri} cannot take {what}: {found}") if found else None


def end_calls(status: str, reason: Optional[str], tag: str) -> list[tuple[str, dict[str, Any]]]:
    """The calls that close a run: the failure tag (if any), then its status."""
    calls = [("tags", {"tags": {tag: reason}})] if reason else []
    return calls + [("terminate", {"status": status, "end_time": int(time.time() * 1000)})]


class _DropDatabaseErrorLogs(logging.Filter):
    """MLflow logs every SQLAlchemy error with its traceback before raising it; the error is raised
    anyway and reported in one line, so its log copy is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("SQLAlchemy database error")


_FILTER = _DropDatabaseErrorLogs()


def quiet_database_error_logs() -> None:
    logger = logging.getLogger("mlflow.store.db.utils")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
