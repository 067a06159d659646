"""sweep.pack: K seeds trained as K towers of one model are K runs, each the same as its seed trained alone.

Tolerance: none. With trainer.deterministic=true on the CPU a packed seed's weights, per-epoch history and
test metrics equal the single run's bit for bit (only the timings differ), because each tower is built,
shuffled and stepped exactly as a single run is (fashion_lab/run/packed.py)."""

import numpy as np
import pytest
from conftest import compose
from mlflow import MlflowClient

TINY = ["data=synthetic", "trainer.epochs=2", "trainer.verbose=0", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "model.filters=[8,16]", "model.dense_units=32", "model.conv_dropout=0.25",
        "trainer.deterministic=true"]
TIMINGS = {"train_seconds", "epoch_seconds"}


def artifact_paths(client, run_id, path=None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return sorted(found)


def _record(client, run_id) -> dict:
    run = client.get_run(run_id)
    return {"params": run.data.params, "tags": set(run.data.tags), "metrics": set(run.data.metrics),
            "artifacts": artifact_paths(client, run_id),
            "val_accuracy": [m.value for m in client.get_metric_history(run_id, "val_accuracy")]}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_float16"])  # float16: each tower's loss scale (GPUs)
def test_two_packed_seeds_are_two_runs_each_equal_to_its_seed_trained_alone(tmp_path, precision):
    from fashion_lab.run.packed import train_packed
    from fashion_lab.run.train import train

    store = f"sqlite:///{tmp_path / 'm.db'}"
    cfgs = [compose(TINY + [f"tracking.uri={store}", f"trainer.seed={seed}", f"trainer.precision={precision}"])
            for seed in (3, 4)]
    packed = train_packed(cfgs)
    assert len(packed) == 2 and packed[0].run_id != packed[1].run_id
    client = MlflowClient(store)
    for cfg, tower in zip(cfgs, packed):
        alone = train(cfg)
        for a, b in zip(alone.model.get_weights(), tower.model.get_weights()):
            assert np.array_equal(a, b)  # bit-exact: the same initialisation, data order, dropout and steps
        columns = [c for c in alone.history.columns if c not in TIMINGS]
        assert list(tower.history.columns) == list(alone.history.columns)
        assert tower.history[columns].equals(alone.history[columns])
        assert {k: v for k, v in tower.metrics.items() if k not in TIMINGS} == {
            k: v for k, v in alone.metrics.items() if k not in TIMINGS}
        mine, single = _record(client, tower.run_id), _record(client, alone.run_id)
        assert mine["params"] == single["params"]  # sweep.pack is how seeds are scheduled: not a param
        assert mine["tags"] == single["tags"] | {"fashion_lab.packed_with"}
        assert client.get_run(tower.run_id).data.tags["fashion_lab.packed_with"] == "3,4"
        assert mine["metrics"] == single["metrics"] and mine["artifacts"] == single["artifacts"]
        assert mine["val_accuracy"] == single["val_accuracy"] and len(mine["val_accuracy"]) == 2
        assert client.get_run(tower.run_id).info.status == "FINISHED"


def test_a_pack_of_runs_that_differ_in_more_than_the_seed_is_refused_before_any_run(tmp_path):
    from fashion_lab.config import ConfigError
    from fashion_lab.run.packed import train_packed

    store = f"sqlite:///{tmp_path / 'm.db'}"
    base = TINY + [f"tracking.uri={store}"]
    cases = {"optimizer.learning_rate differs (0.01 vs 0.02)": [["trainer.seed=0", "optimizer.learning_rate=0.01"],
                                                                 ["trainer.seed=1", "optimizer.learning_rate=0.02"]],
             "repeat": [["trainer.seed=1"], ["trainer.seed=1"]],
             "trainer.early_stopping_patience=2 is not supported": [["trainer.seed=0", "trainer.early_stopping_patience=2"]]}
    for expected, runs in cases.items():
        with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            train_packed([compose(base + extra) for extra in runs])
    assert not (tmp_path / "m.db").exists()  # refused before a run (or the store) was created
