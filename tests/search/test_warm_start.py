"""Warm start (search/start.py): a search's first trial is the base configuration clipped into the space,
then the sweep file's sweep.initial_points; on both backends, read back from the store's child runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from helpers.search import IN_PROCESS, TINY, children

# The base (the tutorial's sgd, lr 0.01, momentum 0.9, batch 32, bn after) meets this space as:
# bn after (the second choice), sgd, lr 0.01 (inside), momentum 0.9 -> 0.8 (the interval's nearer end),
# batch 32 -> 24 (the nearest choice).
WARM_SPACE = """# warm-start test space
hydra:
  sweeper:
    params:
      model.bn_placement: none,after
      optimizer: sgd,adam
      optimizer.learning_rate: tag(log, interval(0.001, 0.05))
      optimizer.momentum: interval(0.5, 0.8)
      trainer.batch_size: 24,64
sweep:
  strategy: random
  conditions:
    optimizer.momentum: optimizer=sgd
  initial_points:
    - {optimizer: adam, optimizer.learning_rate: 0.002}
model:
  filters: [8, 16]
  dense_units: 32
"""

BASE = {"model.bn_placement": "after", "optimizer.name": "sgd", "optimizer.learning_rate": 0.01,
        "optimizer.momentum": 0.8, "trainer.batch_size": 24}


@pytest.fixture
def warm_sweeps(tmp_path):
    folder = tmp_path / "sweeps"
    folder.mkdir()
    (folder / "warm.yaml").write_text(WARM_SPACE)
    return folder


def params_of_trial(store: str, trial_id: str) -> dict:
    run_id = next(t["id"] for t in children(store) if t["tags"]["fashion_lab.trial_id"] == trial_id)
    db = sqlite3.connect(store[len("sqlite:///"):])
    rows = dict(db.execute("select key, value from params where run_uuid=?", (run_id,)).fetchall())
    db.close()
    return rows


def assert_values(params: dict, expected: dict) -> None:
    for key, value in expected.items():
        if isinstance(value, float):
            assert float(params[key]) == pytest.approx(value), key
        else:
            assert params[key] == str(value), key


@pytest.mark.slow  # two tiny trials per strategy (~15-25 s each); still in CI
@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_warm_start_runs_the_base_config_then_the_initial_points(run_cli, store, warm_sweeps, strategy):
    run_cli("tune", "warm", *TINY, f"tuner={strategy}", "tuner.max_trials=2", IN_PROCESS, f"tracking.uri={store}",
            env={"FASHION_LAB_SWEEPS_DIR": str(warm_sweeps)}, check=True)
    assert sorted(t["tags"]["fashion_lab.trial_id"] for t in children(store)) == ["0", "1"]
    assert_values(params_of_trial(store, "0"), BASE)
    first_point = params_of_trial(store, "1")  # the base with the point's keys replaced; momentum inactive
    assert_values(first_point, {**{k: v for k, v in BASE.items() if k != "optimizer.momentum"},
                                "optimizer.name": "adam", "optimizer.learning_rate": 0.002})
    assert first_point.get("optimizer.momentum") in (None, "None")


@pytest.mark.parametrize("strategy", ["random", "bayesian", "hyperband", "tpe"])
def test_warm_start_false_leaves_the_first_trial_to_the_strategy(tmp_path, strategy):
    from fashion_lab.search import study as tune
    from fashion_lab.search.backend import open_backend

    def first(*extra):
        search = tune.prepare_command(["search", f"tuner={strategy}", f"tuner.directory={tmp_path}",
                                       f"tuner.project={strategy}{len(extra)}", *extra])
        return search, open_backend(search).ask(1)[0].values

    search, warm = first()
    assert search.start and {k: v for k, v in warm.items() if not k.startswith("tuner/")} == search.start[0]
    assert warm["optimizer"] == "sgd" and warm["optimizer.learning_rate"] == 0.01  # the tutorial's
    search, cold = first("tuner.warm_start=false")
    assert search.start == [] and cold["optimizer.learning_rate"] != 0.01


def test_grid_starts_from_the_base_config(tmp_path, warm_sweeps, monkeypatch):
    """KerasTuner's grid starts from its entries' defaults: the base point is declared as them."""
    from fashion_lab.search import study as tune
    from fashion_lab.search.backend import open_backend

    (warm_sweeps / "grid3.yaml").write_text("hydra:\n  sweeper:\n    params:\n      model.bn_placement: none,before,after\n")
    monkeypatch.setenv("FASHION_LAB_SWEEPS_DIR", str(warm_sweeps))
    backend = open_backend(tune.prepare_command(["grid3", "tuner=grid", f"tuner.directory={tmp_path}"]))
    seen = []
    while asked := backend.ask(1):  # the grid proposes the next point once the last one ended
        seen.append(asked[0].values["model.bn_placement"])
        backend.tell(asked[0].trial_id, score=0.5)
    assert seen == ["after", "none", "before"]  # the base, then the rest, none twice


def test_base_values_are_clipped_to_the_nearest_allowed_value():
    from fashion_lab.search.space import Dimension
    from fashion_lab.search.start import clip

    assert clip(Dimension("k", "choice", (16, 64, 128)), 32) == 16
    assert clip(Dimension("k", "choice", (0.1, 0.5)), 0.4) == 0.5
    assert clip(Dimension("k", "choice", ("[8,16]", "[32,64]")), [32, 64]) == "[32,64]"
    assert clip(Dimension("k", "choice", ("max", "avg")), "l2") == "max"  # a text the choices lack: the first
    assert clip(Dimension("k", "float", low=0.5, high=0.8), 0.9) == 0.8
    assert clip(Dimension("k", "float", low=0.001, high=0.05, log=True), 0.01) == 0.01
    assert clip(Dimension("k", "int", low=16, high=64), 100) == 64 and clip(Dimension("k", "int", low=1, high=9), 4.6) == 5


@pytest.mark.parametrize("point, message", [
    ("{optimizer.learning_rate: 0.5}", "sweep.initial_points[0].optimizer.learning_rate=0.5 is not allowed: "
                                       "a number from 0.001 to 0.05"),
    ("{optimizer: lion}", "sweep.initial_points[0].optimizer=lion is not allowed: one of sgd, adam"),
    ("{model.pooling: avg}", "sweep.initial_points[0].model.pooling: not an entry of the space; entries: "),
])
def test_a_bad_initial_point_is_refused_before_any_run(run_cli, store, warm_sweeps, point, message):
    (warm_sweeps / "warm.yaml").write_text(WARM_SPACE.replace(
        "- {optimizer: adam, optimizer.learning_rate: 0.002}", f"- {point}"))
    result = run_cli("tune", "warm", *TINY, f"tracking.uri={store}", env={"FASHION_LAB_SWEEPS_DIR": str(warm_sweeps)})
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not Path(store[len("sqlite:///"):]).exists()  # refused before any run
