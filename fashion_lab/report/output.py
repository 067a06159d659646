"""The report folder, written whole: built in a temporary sibling folder, then swapped in.

A killed or failed ``report`` once left new CSVs beside the old HTML, a full disk a cut-off
``report.html`` under its final name, and a symlink planted in the folder was written through.
Now nothing is written into ``report.out`` itself: a new folder is built beside it and renamed
into place, and the previous report is removed only after that (never following a link).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

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
    check_out(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.building-", dir=folder.parent))
    try:
        yield stage
        check_out(folder)  # again: the folder may have changed while the report was built
        swap_in(stage, folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone after a swap; the half-built one after a failure


def swap_in(stage: Path, folder: Path) -> None:
    """Rename ``stage`` to ``folder``; the previous ``folder`` is renamed aside first, then removed."""
    os.chmod(stage, 0o777 & ~_umask())  # mkdtemp's 0700 -> the mode mkdir gives
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.rename(folder, old / "report")  # a kill from here to the next rename leaves the old report in old/
    os.rename(stage, folder)
    if old is not None:
        shutil.rmtree(old)  # rmtree unlinks symlinks, never follows them


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
