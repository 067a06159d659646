"""The report folder, written whole: built in a temporary sibling folder, then swapped in.

A killed or failed ``report`` once left new CSVs beside the old HTML, a full disk a cut-off
``report.html`` under its final name, and a symlink planted in the folder was written through.
Now nothing is written into ``report.out`` itself: a new folder is built beside it and exchanged
with the old one in one step, and the previous report is removed only after that (never following a link).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from fashion_lab.record.owners import owner_alive

# What a report folder holds; a folder holding anything else is not replaced (report.out=~ must not delete ~).
REPORT_NAMES = {"runs.csv", "effects.csv", "report.md", "report.html", "plots"}


class UnsafeOutput(ValueError):
    """report.out is a link, not a folder, or a folder with more than a report in it."""


def check_out(folder: Path) -> None:
    """Refuse an output that a swap would write through or delete more than a report of."""
    if folder.is_symlink():
        raise UnsafeOutput(f"report.out={folder} is a symbolic link; a report is never written through one: "
                           f"give the real folder")
    if folder.exists() and not folder.is_dir():
        raise UnsafeOutput(f"report.out={folder} exists and is not a folder")
    if folder.is_dir():
        other = sorted(set(os.listdir(folder)) - REPORT_NAMES)
        if other:
            raise UnsafeOutput(f"report.out={folder} holds files that are not a report's ({', '.join(other[:5])}); "
                               f"a report replaces its whole folder: choose a new or a report folder")


@contextlib.contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``folder`` to build into; on success it becomes ``folder``."""
    folder = Path(os.path.abspath(folder))
    recover(folder)  # a report killed mid-swap (where renames are two steps) left the old one aside
    check_out(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    clear_abandoned(folder)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-{os.getpid()}-", dir=folder.parent))
    try:
        yield stage
        check_out(folder)  # again: the folder may have changed while the report was built
        swap_in(stage, folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone after a swap; the half-built one after a failure


def swap_in(stage: Path, folder: Path) -> None:
    """Put ``stage`` in place of ``folder`` with no moment where ``folder`` is missing: the two are
    exchanged in one step (Linux renameat2 RENAME_EXCHANGE) and the old report, now in ``stage``, is
    removed. Where the kernel or file system cannot exchange, the old folder is renamed aside first; a
    kill between that and the next rename leaves it in ``.NAME.old-*/report``, and the next report
    puts it back (``recover``) before it starts."""
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp's 0700 -> the mode mkdir gives
    if folder.exists() and _exchange(stage, folder):
        shutil.rmtree(stage)  # the old report now; rmtree unlinks symlinks, never follows them
        return
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.rename(folder, old / "report")  # a kill from here to the next rename: recover() puts it back
    os.rename(stage, folder)
    if old is not None:
        shutil.rmtree(old)


def clear_abandoned(folder: Path) -> None:
    """Remove the half-built folders of reports killed while building (``kill -9`` skips their clean-up): those
    whose builder's pid is gone. A live builder's folder (a concurrent report) is left alone; links are never
    followed (rmtree unlinks them)."""
    for stage in folder.parent.glob(f".{folder.name}.building-*-*"):
        pid = stage.name[len(f".{folder.name}.building-"):].split("-", 1)[0]
        if stage.is_dir() and not stage.is_symlink() and pid.isdigit() and not owner_alive(pid):
            shutil.rmtree(stage, ignore_errors=True)


def recover(folder: Path) -> None:
    """A report killed between the two renames of ``swap_in``'s fallback: its old folder goes back."""
    if folder.exists() or folder.is_symlink():
        return
    for aside in sorted(folder.parent.glob(f".{folder.name}.old-*/report")):
        os.rename(aside, folder)
        shutil.rmtree(aside.parent, ignore_errors=True)
        return


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE, Linux 3.15+, glibc 2.28+); False where
    that is not available, so the caller falls back to two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):  # not supported there
        return False
    raise OSError(code, os.strerror(code), str(b))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
