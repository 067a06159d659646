"""build_optimizer: every optimizer config, and the tutorial's legacy decay reproduced exactly."""

import numpy as np
import pytest
from conftest import compose

keras = pytest.importorskip("keras")

from fashion_lab.model.optimizers import build_optimizer, current_learning_rate, legacy_decay_schedule  # noqa: E402


@pytest.mark.parametrize("step", [0, 1, 10, 1718, 43_000])
def test_legacy_decay_schedule_matches_keras2_formula(step):
    lr0, decay = 0.01, 0.01 / 25  # the tutorial's INIT_LR and INIT_LR / NUM_EPOCHS
    value = float(keras.ops.convert_to_numpy(legacy_decay_schedule(lr0, decay)(step)))
    assert value == pytest.approx(lr0 / (1 + decay * step), rel=1e-6)


def test_tutorial_optimizer_decays_per_step():
    cfg = compose(["experiment=tutorial"])
    optimizer = build_optimizer(cfg.optimizer)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert float(optimizer.momentum) == pytest.approx(0.9)
    weight = keras.Variable(np.ones(3, "float32"))
    for _ in range(100):
        optimizer.apply_gradients([(keras.ops.ones(3), weight)])
    assert current_learning_rate(optimizer) == pytest.approx(0.01 / (1 + 0.0004 * 100), rel=1e-6)


@pytest.mark.parametrize("name,cls", [("sgd", "SGD"), ("adam", "Adam"), ("rmsprop", "RMSprop"), ("adamw", "AdamW")])
def test_each_optimizer_config_builds_its_optimizer(name, cls):
    cfg = compose([f"optimizer={name}"])
    optimizer = build_optimizer(cfg.optimizer)
    assert type(optimizer).__name__ == cls
    assert current_learning_rate(optimizer) == pytest.approx(cfg.optimizer.learning_rate)


def test_sgd_nesterov_and_weight_decay_reach_keras():
    optimizer = build_optimizer(compose(["optimizer.nesterov=true", "optimizer.weight_decay=0.001"]).optimizer)
    assert optimizer.nesterov is True and optimizer.weight_decay == pytest.approx(0.001)
    assert build_optimizer(compose(["optimizer=adamw"]).optimizer).weight_decay == pytest.approx(0.004)


def test_the_registry_names_every_optimizer_the_schema_and_conf_offer():
    from fashion_lab.config import CONF_DIR, OptimizerName
    from fashion_lab.model.optimizers import OPTIMIZERS

    assert set(OPTIMIZERS) == {n.value for n in OptimizerName} == {p.stem for p in (CONF_DIR / "optimizer").glob("*.yaml")}
    for name, spec in OPTIMIZERS.items():
        assert hasattr(keras.optimizers, spec.keras_class), name


def test_validation_reads_which_keys_each_optimizer_takes(monkeypatch):
    """momentum and nesterov are refused or allowed as the registry says, not by a second list."""
    from fashion_lab.config import ConfigError
    from fashion_lab.model import optimizers
    from fashion_lab.preflight import validate

    with pytest.raises(ConfigError, match=r"optimizer\.nesterov=True is not allowed: only for optimizer.name sgd "):
        validate(compose(["optimizer=rmsprop", "optimizer.nesterov=true"]))
    monkeypatch.setitem(optimizers.OPTIMIZERS, "rmsprop", optimizers.OptimizerSpec("RMSprop", ("momentum", "nesterov")))
    validate(compose(["optimizer=rmsprop", "optimizer.nesterov=true"]))  # the registry now says rmsprop takes it
