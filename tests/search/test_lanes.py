"""Search lanes (fashion_lab/search/lanes.py): ``tuner.parallel_trials`` lanes ask for a trial as soon as
any trial ends (no batch barrier), and a job that raises is a failed trial, not a lost search.

The lane loop is checked with a launcher that sleeps (fast); the real thing with the installed CLI, the
joblib launcher and a real sqlite store (slow), where run start and end times show the barrier is gone."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

# --- the lane loop, with a launcher that sleeps -------------------------------------------------


class ListBackend:
    """A SearchBackend over a fixed list of trials, in memory; ``waits``: trial ids it holds back until
    every earlier trial was told (as Hyperband waits for a round)."""
    direction = "max"

    def __init__(self, seconds: list[float], waits=()):
        self.todo = [(str(i), s) for i, s in enumerate(seconds)]
        self.waits, self.told, self.asked_while_running = set(waits), {}, []

    def ask(self, n: int):
        from fashion_lab.search.backend import Trial

        asked = []
        while self.todo and len(asked) < n:
            trial_id, seconds = self.todo[0]
            if trial_id in self.waits and len(self.told) < int(trial_id):
                break
            self.todo.pop(0)
            asked.append(Trial(trial_id, {"seconds": seconds}))
        return asked

    def tell(self, trial_id, score=None, failure=None, pruned=False):
        self.told[trial_id] = failure if failure is not None else score


class SleepingLauncher:
    """Launches each job in this thread: it sleeps the trial's seconds; ``raising``: trials whose job
    raises (Hydra's JobReturn FAILED); ``cancelled``: trials whose launch itself fails (submitit)."""

    def __init__(self, raising=(), cancelled=()):
        self.raising, self.cancelled = set(raising), set(cancelled)
        self.spans, self.indices, self.lock = {}, [], threading.Lock()

    def launch(self, jobs, initial_job_idx):
        from hydra.core.utils import JobReturn, JobStatus

        from fashion_lab.sweeps.job import JobResult

        returns = []
        for i, (trial_id, seconds) in enumerate(jobs):
            start = time.monotonic()
            time.sleep(seconds)
            with self.lock:
                self.spans[trial_id] = (start, time.monotonic())
                self.indices.append(initial_job_idx + i)
            if trial_id in self.cancelled:
                raise RuntimeError(f"job of trial {trial_id} was cancelled")
            ret = JobReturn(status=JobStatus.COMPLETED)
            ret.return_value = JobResult(status="FINISHED", objectives={"val_accuracy": 1.0 / (1 + seconds)})
            if trial_id in self.raising:
                ret.status, ret.return_value = JobStatus.FAILED, ValueError(f"trial {trial_id} raised")
            returns.append(ret)
        return returns


def run_lanes(backend, launcher, lanes: int, per_ask: int = 1):
    from fashion_lab.search.lanes import Lanes

    def tell(trial, results):
        failed = [r for r in results if r.status != "FINISHED"]
        backend.tell(trial.trial_id, failure=failed[0].reason if failed else None,
                     score=None if failed else results[0].objectives["val_accuracy"])

    state = Lanes(backend, jobs_of=lambda trial: [(trial.trial_id, trial.values["seconds"])],
                  launch=launcher.launch, tell=tell, per_ask=per_ask)
    state.run(lanes)
    return state


def test_two_lanes_start_a_trial_before_the_slow_one_ends():
    backend, launcher = ListBackend([0.6, 0.05, 0.05, 0.05]), SleepingLauncher()
    run_lanes(backend, launcher, lanes=2)
    slow_end = launcher.spans["0"][1]
    assert launcher.spans["2"][0] < slow_end and launcher.spans["3"][0] < slow_end  # no barrier
    assert set(backend.told) == {"0", "1", "2", "3"}
    assert sorted(launcher.indices) == [0, 1, 2, 3]  # every job its own index (and output folder)


def test_one_lane_of_two_keeps_the_batch():
    backend, launcher = ListBackend([0.3, 0.05, 0.05]), SleepingLauncher()
    run_lanes(backend, launcher, lanes=1, per_ask=2)  # the basic launcher: batches of parallel_trials
    assert launcher.spans["2"][0] >= launcher.spans["0"][1]
    assert set(backend.told) == {"0", "1", "2"}


def test_a_raising_job_is_a_failed_trial_and_the_search_goes_on():
    backend, launcher = ListBackend([0.05, 0.05, 0.05]), SleepingLauncher(raising={"1"})
    state = run_lanes(backend, launcher, lanes=2)
    assert not state.lost
    assert backend.told["1"] == "the job raised ValueError: trial 1 raised"
    assert isinstance(backend.told["0"], float) and isinstance(backend.told["2"], float)


def test_a_cancelled_job_stops_asking_and_the_others_are_told():
    backend, launcher = ListBackend([0.3, 0.05, 0.05, 0.05]), SleepingLauncher(cancelled={"1"})
    state = run_lanes(backend, launcher, lanes=2)
    assert state.lost == ["trial 1: RuntimeError: job of trial 1 was cancelled"]
    assert set(backend.told) == {"0"}  # the running trial is told; trial 1 stays running, 2 and 3 wait
    assert [t for t, _ in backend.todo] == ["2", "3"]


def test_a_lane_waits_while_the_backend_waits_for_running_trials():
    backend, launcher = ListBackend([0.3, 0.05, 0.05], waits={"2"}), SleepingLauncher()
    run_lanes(backend, launcher, lanes=2)  # the lane that ran trial 1 must not end when ask says "none yet"
    assert set(backend.told) == {"0", "1", "2"}
    assert launcher.spans["2"][0] >= launcher.spans["0"][1]


def test_a_job_that_raises_is_failed_not_lost():
    from hydra.core.utils import JobReturn, JobStatus

    from fashion_lab.search.lanes import job_result

    ret = JobReturn(status=JobStatus.FAILED)
    ret.return_value = RuntimeError("boom\nmore")
    assert (job_result(ret).status, job_result(ret).reason) == ("FAILED", "the job raised RuntimeError: boom")


def test_lanes_only_on_launchers_that_run_jobs_elsewhere():
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher

    from fashion_lab.search.lanes import lanes_for

    assert lanes_for(BasicLauncher(), 3) == (1, 3)
    assert lanes_for(JoblibLauncher(n_jobs=2), 3) == (3, 1)
    assert lanes_for(JoblibLauncher(n_jobs=1), 3) == (1, 3)  # joblib runs n_jobs=1 in the calling thread


# --- the real thing: the installed CLI, real launchers, a real store ---------------------------

# Trial 0 is the base (trainer.epochs 10 -> 1, the nearer choice; learning rate 0.01), then the initial
# points: a 40-epoch trial beside it, and a 1-epoch trial that a free lane starts while the long one trains.
UNEVEN_SPACE = """# trials of very different lengths
hydra:
  sweeper:
    params:
      trainer.epochs: 1,40
      optimizer.learning_rate: 0.01,0.02,0.03
sweep:
  strategy: random
  initial_points:
    - {trainer.epochs: 40, optimizer.learning_rate: 0.02}
    - {trainer.epochs: 1, optimizer.learning_rate: 0.03}
model:
  filters: [8, 16]
  dense_units: 32
"""
TINY = ["data=synthetic", "data.synthetic_train=300", "data.synthetic_test=100", "data.val_samples=60",
        "trainer.verbose=0", "tuner.fresh_process=false"]

# Trial 1's job raises outside run_job's own error handling, in whichever process runs it (a bug, a
# broken worker): Hydra hands the sweeper a JobReturn whose return_value raises.
RAISING_JOB = """import fashion_lab.sweeps.job as job

_real = job.run_job


def run_job(cfg, epoch_hook=None):
    if str((cfg.sweep.trial or {}).get("trial_id")) == "1":
        raise RuntimeError("a job that raises")
    return _real(cfg, epoch_hook=epoch_hook)


job.run_job = run_job
"""


def trial_runs(store: str) -> dict[str, dict]:
    """Trial id -> the trial's run (status, start and end times in ms), read straight from the sqlite store."""
    db = sqlite3.connect(f"file:{store[len('sqlite:///'):]}?mode=ro", uri=True)
    rows = db.execute("select r.run_uuid, r.status, r.start_time, r.end_time, t.value from runs r join tags t "
                      "on t.run_uuid = r.run_uuid and t.key = 'fashion_lab.trial_id'").fetchall()
    db.close()
    return {trial: {"id": run, "status": status, "start": start, "end": end} for run, status, start, end, trial in rows}


@pytest.fixture
def uneven_sweeps(tmp_path):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "uneven.yaml").write_text(UNEVEN_SPACE)
    return folder


@pytest.mark.slow  # three tiny trials on two joblib workers (1-3 min on 2 busy cores)
def test_two_lanes_on_joblib_start_a_trial_before_the_slow_one_ends(run_cli, store, uneven_sweeps):
    result = run_cli("tune", "uneven", *TINY, "tuner.max_trials=3", "tuner.parallel_trials=2", "hydra/launcher=joblib",
                     "hydra.launcher.n_jobs=2", f"tracking.uri={store}", env={"FASHION_LAB_SWEEPS_DIR": str(uneven_sweeps)},
                     timeout=400, check=True)
    trials = trial_runs(store)
    assert sorted(trials) == ["0", "1", "2"] and {t["status"] for t in trials.values()} == {"FINISHED"}, result.stderr
    slowest_end = max(trials["0"]["end"], trials["1"]["end"])  # trial 1's 40 epochs
    assert trials["2"]["start"] < slowest_end, (trials, result.stdout[-2000:])  # a batch would wait for it


@pytest.mark.slow  # three tiny trials in the search process (~30 s)
def test_a_raising_job_is_a_failed_trial_and_the_search_goes_on_for_real(run_cli, store, uneven_sweeps, tmp_path):
    (tmp_path / "patch").mkdir()
    (tmp_path / "patch" / "sitecustomize.py").write_text(RAISING_JOB)
    env = {"FASHION_LAB_SWEEPS_DIR": str(uneven_sweeps), "PYTHONPATH": str(tmp_path / "patch")}
    result = run_cli("tune", "uneven", *TINY, "trainer.epochs=1", "tuner.max_trials=3", f"tracking.uri={store}",
                     env=env, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "trial 1 failed: the job raised RuntimeError: a job that raises" in result.stderr
    assert "2 completed, 1 failed trials" in result.stdout
    trials = trial_runs(store)
    assert sorted(trials) == ["0", "2"] and {t["status"] for t in trials.values()} == {"FINISHED"}
