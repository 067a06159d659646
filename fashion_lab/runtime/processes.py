"""This machine's processes as /proc shows them (one reader), and stopping the ones a sweep started."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Optional

STATE, PARENT, START = 0, 1, 19  # fields of /proc/PID/stat after the command name


def proc_stat(pid: int | str) -> Optional[list[str]]:
    """The fields of /proc/PID/stat after the ``(command)``; None when there is no such process (or no /proc)."""
    try:
        return Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None


def descendants() -> list[int]:
    """Every live process under this one (children, grandchildren, ...)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = proc_stat(stat.parent.name)
        if fields and fields[STATE] not in ("Z", "X"):
            parents.setdefault(int(fields[PARENT]), []).append(int(stat.parent.name))
    found, todo = [], [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_workers(grace_s: float = 20.0) -> None:
    """SIGTERM every process this one started (launcher workers, trial processes), once: each closes
    its run KILLED; whatever is still alive after ``grace_s`` is killed (its run is then reaped KILLED)."""
    deadline, signalled = time.monotonic() + grace_s, set()
    while (pids := descendants()) and time.monotonic() < deadline + 5:
        for pid in pids:
            if pid not in signalled or time.monotonic() > deadline:
                signalled.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL)
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:  # our own children: collect them, not leave zombies
                pass
