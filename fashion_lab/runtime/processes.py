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
    while (pids := [p for p in descendants() if not ignores_sigterm(p)]) and time.monotonic() < deadline + 5:
        for pid in pids:
            if pid not in signalled or time.monotonic() > deadline:
                signalled.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL)
        time.sleep(0.2)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:  # our own children: collect them, not leave zombies
                pass


def ignores_sigterm(pid: int) -> bool:
    """A helper that ignores SIGTERM (loky's and multiprocessing's resource trackers) is left alone: it
    exits by itself once this process is gone, and killed early it prints tracebacks after our message."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def stop_workers_then_raise(signum, frame) -> None:
    """A sweep's SIGTERM handler: the workers are told first and each closes its own run, before the
    exception reaches the launcher (joblib's loky kills its workers without a word when it sees one)."""
    from fashion_lab.runtime.signals import raise_terminated

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut this short
    stop_workers()
    raise_terminated(signum, frame)


def exit_if_worker(error: BaseException) -> None:
    """In a launcher's worker process (joblib's loky), a SIGTERM ends the process once its run is
    closed: the worker would otherwise take the next queued point and be killed in the middle of it."""
    import multiprocessing
    import sys

    from fashion_lab.runtime.signals import Terminated

    if isinstance(error, Terminated) and multiprocessing.current_process().name != "MainProcess":
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(143)
