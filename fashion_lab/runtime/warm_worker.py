"""Run trials in a warm worker process: TensorFlow imported once, the process replaced after N trials.

Why: a fresh process per trial keeps a long search's memory flat (TensorFlow keeps ~16-25 MB of
graphs per fitted model in its process) but pays TensorFlow's import on every trial. A warm worker
pays it once per ``trials_per_worker`` trials; retiring the worker after that many trials bounds
what it can accumulate. A trial that raises also retires its worker: whatever it left half-built
is not handed to the next trial. Each thread of the calling process gets its own worker (keyed
with the process-wide TensorFlow settings a worker cannot change once it has trained), so trials
never share a worker concurrently.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import math
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Hashable

from fashion_lab.runtime.fresh_process import (_STOP_GRACE_S, ChildProcessDied, _die_with_parent, call_in_fresh_process,
                                       spawn_context)

# Imported before the first job: the expensive part of a trial's start (TensorFlow alone is ~3-5 s).
PRELOAD = ("tensorflow", "keras", "fashion_lab.run.train")


def _peak_rss_mb() -> float:
    """This process's peak RSS so far (VmHWM), in MB; NaN where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _follow(cwd: str, env: dict[str, str], inherited: set[str]) -> None:
    """Run the job where and with what a fresh process would have inherited now (hydra.job.chdir,
    a launcher's env_set): the caller's working folder and environment variables. ``inherited``
    holds every variable name the caller has passed so far, so one it has since removed goes too."""
    os.chdir(cwd)
    for name in inherited - env.keys():
        os.environ.pop(name, None)
    inherited.update(env)
    os.environ.update(env)


def _serve(conn, parent_pid: int, preload: tuple[str, ...]) -> None:
    """The worker's loop: preload, then run jobs until told to stop, a job raises, or the parent goes."""
    _die_with_parent(parent_pid)
    try:
        for name in preload:
            importlib.import_module(name)
        inherited = set(os.environ)
        while True:
            job = conn.recv()
            if job is None:
                return
            fn, args, kwargs, cwd, env = job
            _follow(cwd, env, inherited)
            try:
                outcome = ("ok", fn(*args, **kwargs))
            except BaseException as error:  # noqa: BLE001 - handed to the parent, which re-raises it
                outcome = ("error", error)
            try:
                conn.send((*outcome, _peak_rss_mb()))
            except Exception:  # an unpicklable result or exception: send its text instead
                conn.send(("error", RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]}"), _peak_rss_mb()))
                return
            if outcome[0] == "error":
                return
            if "keras" in sys.modules:  # frees the model; TF's per-fit graphs stay until the worker retires
                sys.modules["keras"].backend.clear_session()
            gc.collect()
    except (EOFError, KeyboardInterrupt):  # the parent went away, or Ctrl-C between jobs
        return
    finally:
        conn.close()


class WarmWorker:
    """One worker process and the pipe to it."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD):
        context = spawn_context()
        self.conn, child_end = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve, args=(child_end, os.getpid(), preload), daemon=True)
        self.process.start()
        child_end.close()  # so recv() sees EOF if the worker dies
        self.pid = self.process.pid
        self.jobs = 0

    def call(self, fn: Callable, args: tuple, kwargs: dict) -> tuple[str, Any]:
        """Run one job: ("ok", value) or ("error", exception); the worker's peak RSS goes to peak_mb."""
        global _PEAK_MB
        self.jobs += 1
        try:
            self.conn.send((fn, args, kwargs, os.getcwd(), dict(os.environ)))
            kind, value, peak = self.conn.recv()
            _PEAK_MB = max(_PEAK_MB, peak)
            return kind, value
        except (EOFError, BrokenPipeError):
            self.process.join()
            raise ChildProcessDied(f"the worker running {fn.__name__} ended with exit code "
                                   f"{self.process.exitcode} before returning (killed, or out of memory?)") from None
        except BaseException:  # interrupted while waiting: the worker gets SIGTERM and closes its run
            self.process.terminate()
            raise

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        """Let the worker exit (it returns all its memory); kill it if it does not."""
        if self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.conn.close()
        self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


_WORKERS: dict[Hashable, WarmWorker] = {}
_PEAK_MB = 0.0  # the largest peak RSS any worker of this process reported
_LOCK = threading.Lock()


def call_in_warm_worker(fn: Callable, *args: Any, trials_per_worker: int, key: Hashable = (),
                        **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` in this thread's warm worker for ``key``: its value, or its exception
    re-raised here. The worker is started on first use and replaced after ``trials_per_worker`` calls,
    after a call that raised, and when it died; ``trials_per_worker=1`` is a fresh process per call."""
    if trials_per_worker <= 1:
        return call_in_fresh_process(fn, *args, **kwargs)
    slot = (threading.get_ident(), key)
    with _LOCK:
        for other in [k for k in _WORKERS if k[0] == slot[0] and k != slot]:  # settings changed: retire
            _WORKERS.pop(other).stop()
        worker = _WORKERS.get(slot)
        if worker is None or not worker.process.is_alive():
            worker = _WORKERS[slot] = WarmWorker()
    kind, value = "error", None
    try:
        kind, value = worker.call(fn, args, kwargs)
    finally:
        if kind == "error" or worker.jobs >= trials_per_worker:
            with _LOCK:
                if _WORKERS.get(slot) is worker:
                    del _WORKERS[slot]
            worker.stop()
    if kind == "error":
        raise value
    return value


def peak_mb() -> float:
    """The largest peak RSS (MB) a warm worker of this process has reported (0 before any)."""
    return _PEAK_MB


def worker_pids() -> list[int]:
    """The warm workers alive in this process (for tests and benchmarks)."""
    return [w.pid for w in _WORKERS.values() if w.process.is_alive()]


@atexit.register
def stop_all() -> None:
    """Retire every worker (at exit: each exits on its own instead of being terminated)."""
    with _LOCK:
        workers = list(_WORKERS.values())
        _WORKERS.clear()
    for worker in workers:
        worker.stop(grace_s=5)
