"""warm_worker: consecutive trials reuse one worker with TensorFlow loaded; it is replaced after N trials,
after a trial that raised, and a trial computes there exactly what it computes in a fresh process."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from fashion_lab.runtime.fresh_process import call_in_fresh_process
from fashion_lab.runtime.warm_worker import call_in_warm_worker, stop_all, worker_pids

_CALLS = 0  # per process: a worker that re-imported this module would count from 1 again


def fit_tiny(seed: int) -> dict:
    """A real (tiny) training run: two Gaussian blobs, a small dense net, 15 epochs."""
    global _CALLS
    _CALLS += 1
    tf_was_loaded = "tensorflow" in sys.modules and "keras" in sys.modules
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x[:, :4].sum(axis=1) > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return {"pid": os.getpid(), "calls": _CALLS, "tf_was_loaded": tf_was_loaded, "loss": history.history["loss"]}


class Refused(ValueError):
    pass


def refuse(message: str) -> None:
    raise Refused(message)


def _gone(pid: int, wait_s: float = 10) -> bool:
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(autouse=True)
def _no_workers_left():
    yield
    stop_all()


@pytest.mark.slow
def test_consecutive_trials_share_a_warm_worker_that_is_replaced_after_n():
    first, second, third = (call_in_warm_worker(fit_tiny, seed, trials_per_worker=2) for seed in (0, 1, 2))
    assert first["pid"] != os.getpid()
    # One worker for the first two: TensorFlow was loaded before either trial, the module was not re-imported.
    assert second["pid"] == first["pid"] and (first["calls"], second["calls"]) == (1, 2)
    assert first["tf_was_loaded"] and second["tf_was_loaded"]
    assert _gone(first["pid"])  # retired after its second trial, memory returned
    assert third["pid"] != first["pid"] and third["calls"] == 1 and third["tf_was_loaded"]
    assert worker_pids() == [third["pid"]]  # kept warm for the next trial
    for result in (first, second, third):  # each one really trained
        assert result["loss"][-1] < 0.6 * result["loss"][0]


def whoami() -> tuple[int, int]:
    global _CALLS
    _CALLS += 1
    return os.getpid(), _CALLS


@pytest.mark.slow
def test_a_trial_in_a_used_worker_computes_what_a_fresh_process_computes_and_a_raise_retires_it():
    call_in_warm_worker(fit_tiny, 5, trials_per_worker=3)  # leaves a trained model's state behind
    warm = call_in_warm_worker(fit_tiny, 7, trials_per_worker=3)
    fresh = call_in_fresh_process(fit_tiny, 7)
    assert warm["calls"] == 2 and fresh["calls"] == 1
    assert warm["loss"] == fresh["loss"]
    with pytest.raises(Refused, match="bad value 3"):  # the third trial raises: re-raised here, worker retired
        call_in_warm_worker(refuse, "bad value 3", trials_per_worker=3)
    assert _gone(warm["pid"]) and worker_pids() == []


def where() -> tuple[int, str, str]:
    return os.getpid(), os.getcwd(), os.environ.get("FASHION_LAB_TEST_VALUE", "unset")


def test_a_worker_follows_the_callers_folder_and_environment_and_settings_get_another_worker(
        tmp_path, monkeypatch):
    a_pid, _ = call_in_warm_worker(whoami, trials_per_worker=5, key=(None, False))
    monkeypatch.chdir(tmp_path)  # as hydra.job.chdir=true or a launcher's env_set would between jobs
    monkeypatch.setenv("FASHION_LAB_TEST_VALUE", "job 2")
    assert call_in_warm_worker(where, trials_per_worker=5, key=(None, False)) == (a_pid, str(tmp_path), "job 2")
    monkeypatch.delenv("FASHION_LAB_TEST_VALUE")
    assert call_in_warm_worker(where, trials_per_worker=5, key=(None, False))[2] == "unset"
    b_pid, b_calls = call_in_warm_worker(whoami, trials_per_worker=5, key=(1, False))
    assert b_pid != a_pid and b_calls == 1 and _gone(a_pid)  # TF's thread count is fixed once a worker trained
    stop_all()
    (c_pid, c_calls), (d_pid, d_calls) = (call_in_warm_worker(whoami, trials_per_worker=1) for _ in range(2))
    assert c_pid != d_pid and c_calls == d_calls == 1 and worker_pids() == []


@pytest.mark.slow
def test_a_search_records_the_same_trials_in_warm_workers_as_in_fresh_processes(run_cli, tmp_path):
    """`fashion-lab tune` over a grid of 3: trials_per_worker=3 (two trials in a used worker) against 1."""
    import mlflow

    tiny = ["bn_placement", "tuner=grid", "data=synthetic", "trainer.epochs=1", "data.synthetic_train=300",
            "data.synthetic_test=100", "data.val_samples=60", "trainer.verbose=0", "model.filters=[8,16]",
            "trainer.batch_size=64", "tracking.log_plots=false"]
    recorded = {}
    for per_worker in (1, 3):
        uri = f"sqlite:///{tmp_path / f'm{per_worker}.db'}"
        run_cli("tune", *tiny, f"tuner.trials_per_worker={per_worker}", f"tracking.uri={uri}",
                f"tuner.directory={tmp_path / f'tuner{per_worker}'}", check=True)
        client = mlflow.MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("fashion-lab").experiment_id],
                                  filter_string="tags.`fashion_lab.role` = 'trial'")
        recorded[per_worker] = {r.data.params["model.bn_placement"]: (
            {k: v for k, v in r.data.params.items() if not k.startswith(("tuner.", "tracking.", "sweep."))},
            {k: v for k, v in r.data.metrics.items() if "seconds" not in k}) for r in runs}
    assert sorted(recorded[1]) == ["after", "before", "none"]
    assert recorded[3] == recorded[1]


def test_trials_per_worker_below_one_is_refused_before_any_run():
    from conftest import compose
    from fashion_lab.config import ConfigError
    from fashion_lab.preflight import validate

    with pytest.raises(ConfigError, match="tuner.trials_per_worker"):
        validate(compose(["tuner.trials_per_worker=0"]))
