"""Trials in lanes: ``tuner.parallel_trials`` lanes, each running one trial at a time, so a new trial is
asked for as soon as any trial ends (no batch barrier: a slow trial idles no other worker).

Hydra's launchers take whole batches, so each lane is a thread that launches its trial's jobs alone
through the configured launcher (``launch(jobs, initial_job_idx)``) and waits for them. The lanes share
the backend under one lock: ask, tell and the sweeper's record of a trial run one at a time. Only a
launcher that runs jobs in other processes tolerates launches from several threads (joblib with more
than one worker, submitit: each launch is its own ``Parallel``/executor call, every job its own index
and output folder); on any other launcher (basic, joblib with ``n_jobs=1``) one lane launches batches
of ``parallel_trials`` trials, as before. Plain Python: no library of its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from fashion_lab.search.backend import SearchStopped, Trial
from fashion_lab.sweeps.job import JobResult

# Launchers whose jobs run in other processes (a launch from a thread only waits for them).
CONCURRENT_LAUNCHERS = ("hydra_plugins.hydra_joblib_launcher.", "hydra_plugins.hydra_submitit_launcher.")


def lanes_for(launcher, parallel_trials: int) -> tuple[int, int]:
    """(lanes, trials per ask): N lanes of one trial on a concurrent launcher, else one lane of N."""
    concurrent = type(launcher).__module__.startswith(CONCURRENT_LAUNCHERS)
    joblib = getattr(launcher, "joblib", None)
    if concurrent and joblib is not None and int(joblib.get("n_jobs", -1) or -1) == 1:
        concurrent = False  # joblib runs n_jobs=1 in the calling thread: jobs would share this process
    return (parallel_trials, 1) if concurrent else (1, parallel_trials)


def job_result(job_return) -> JobResult:
    """A job's JobResult; a job that raised (Hydra's JobReturn FAILED) is a failed trial with its error."""
    try:
        return job_return.return_value
    except Exception as error:  # noqa: BLE001 - Hydra re-raises the job's own exception here
        return JobResult(status="FAILED", reason=f"the job raised {type(error).__name__}: {error}".splitlines()[0])


@dataclass
class Lanes:
    """The shared state of a search's lanes. ``jobs_of(trial)``: a trial's job overrides; ``launch``:
    the launcher's; ``tell(trial, results)``: the sweeper's record of an ended trial (may raise SearchStopped)."""
    backend: Any
    jobs_of: Callable[[Trial], list]
    launch: Callable[..., list]
    tell: Callable[[Trial, list], None]
    per_ask: int = 1
    job_idx: int = 0
    in_flight: int = 0
    stopped: Optional[str] = None            # the backend ended the search (SearchStopped)
    lost: list = field(default_factory=list)  # trials whose jobs ended without a result
    interrupted: bool = False                # Ctrl-C/SIGTERM in the main thread: lanes do nothing more
    error: Optional[BaseException] = None    # an unexpected error in a lane, raised again by run()
    lock: threading.Condition = field(default_factory=threading.Condition)

    def _halted(self) -> bool:
        return bool(self.stopped or self.lost or self.interrupted or self.error)

    def _next(self) -> list:
        """The lane's next trials (under the lock); waits while the backend has none but trials still run
        (Hyperband waits for a round); [] when the search is over for this lane."""
        while not self._halted():
            try:
                trials = self.backend.ask(self.per_ask)
            except SearchStopped as error:
                self.stopped = str(error)
                break
            if trials:
                self.in_flight += len(trials)
                return trials
            if not self.in_flight:
                break
            self.lock.wait()
        self.lock.notify_all()
        return []

    def _ended(self, trials: list, jobs: list, results: list) -> None:
        """Tell the backend each trial's results (under the lock); a trial with a LOST job stays running in it."""
        results = iter(results)
        for trial, trial_jobs in zip(trials, jobs):
            trial_results = [next(results) for _ in trial_jobs]
            if any(r.status == "LOST" for r in trial_results):  # the same command re-runs it
                self.lost.append(f"trial {trial.trial_id}: {trial_results[0].reason}")
            else:  # also after the backend stopped the search: a trial that ran is counted
                try:
                    self.tell(trial, trial_results)
                except SearchStopped as error:
                    self.stopped = self.stopped or str(error)

    def lane(self) -> None:
        """One lane: ask, launch alone, tell, until the search is over."""
        try:
            while True:
                with self.lock:
                    if not (trials := self._next()):
                        return
                    jobs = [self.jobs_of(trial) for trial in trials]
                    flat = [job for trial_jobs in jobs for job in trial_jobs]
                    first, self.job_idx = self.job_idx, self.job_idx + len(flat)  # unique indices and folders
                try:
                    results = [job_result(r) for r in self.launch(flat, initial_job_idx=first)]
                except Exception as error:  # noqa: BLE001 - a cancelled or killed job (submitit, loky)
                    results = [JobResult.lost(f"{type(error).__name__}: {error}".splitlines()[0])] * len(flat)
                with self.lock:
                    try:
                        if not self.interrupted:
                            self._ended(trials, jobs, results)
                    finally:
                        self.in_flight -= len(trials)
                        self.lock.notify_all()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            with self.lock:
                self.error = self.error or error
                self.lock.notify_all()

    def run(self, lanes: int) -> None:
        """Run ``lanes`` lanes until the search is over; raises SearchStopped, or a lane's error. Ctrl-C or
        SIGTERM reach the main thread only: it stops the lanes from asking and telling, and unwinds."""
        if lanes == 1:  # in the main thread: a job the basic launcher runs here still gets the signals
            self.lane()
            threads = []
        else:
            threads = [threading.Thread(target=self.lane, name=f"lane{i}", daemon=True) for i in range(lanes)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)  # a timed join keeps the main thread responsive to signals
        except BaseException:
            with self.lock:  # the lanes' launches are ended by the caller's abort (it stops the workers)
                self.interrupted = True
                self.lock.notify_all()
            raise
        if self.error is not None:
            raise self.error
        if self.stopped:
            raise SearchStopped(self.stopped)
