"""Run one function call in a new Python process that dies with its parent.

Why: TensorFlow keeps the traced graphs of every fitted model alive in its process (see
benchmarks/README.md), so a long search trains each trial in a process of its own. The child
is started with ``spawn`` (no fork of a process running TensorFlow threads) and is SIGKILLed
by the kernel when its parent dies; its run is then reaped KILLED by the next command.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import resource
import signal
from pathlib import Path
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_S = 30  # an interrupted child closes its MLflow run before we stop waiting


class ChildProcessDied(RuntimeError):
    """The child ended without returning (killed, out of memory, crashed interpreter)."""


def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the child may outlive a SIGKILLed parent
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _child(conn, parent_pid: int, fn: Callable, args: tuple, kwargs: dict) -> None:
    _die_with_parent(parent_pid)
    try:
        outcome = ("ok", fn(*args, **kwargs))
    except BaseException as error:  # noqa: BLE001 - handed to the parent, which re-raises it
        outcome = ("error", error)
    try:
        conn.send(outcome)
    except Exception:  # an unpicklable result or exception: send its text instead
        value = outcome[1]
        conn.send(("error", RuntimeError(f"{type(value).__name__}: {value}")))
    finally:
        conn.close()


def memory_mb() -> tuple[float, float]:
    """This process's RSS, and the largest peak RSS of its finished child processes, in MB (Linux)."""
    rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def spawn_context():
    """multiprocessing's spawn context, usable from a joblib (loky) worker too."""
    if multiprocessing.get_start_method(allow_none=True) not in (None, "spawn", "fork", "forkserver"):
        # A joblib (loky) worker: the child would be told to use loky's start method, unknown outside loky.
        multiprocessing.set_start_method("spawn", force=True)
    return multiprocessing.get_context("spawn")


def call_in_fresh_process(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in a new process: its return value, or its exception re-raised here.

    ``fn``, its arguments and its result must pickle. If this process is interrupted while
    waiting (Ctrl-C, SIGTERM), the child gets SIGTERM and some seconds to close its run.
    """
    context = spawn_context()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, os.getpid(), fn, args, kwargs), daemon=True)
    child.start()
    send.close()  # so recv() sees EOF if the child dies without answering
    try:
        kind, value = receive.recv()
    except EOFError:
        child.join()
        raise ChildProcessDied(f"the process running {fn.__name__} ended with exit code {child.exitcode} "
                               "before returning (killed, or out of memory?)") from None
    except BaseException:  # interrupted while waiting: stop the child, let it close its run
        child.terminate()
        raise
    finally:
        receive.close()
        child.join(_STOP_GRACE_S)
        if child.is_alive():
            child.kill()
            child.join()
    if kind == "error":
        raise value
    return value
