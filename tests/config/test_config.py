"""Every config composes; ranges, enums and typos are rejected with the key named."""

import pytest
from omegaconf import open_dict
from conftest import REPO, compose
from hydra.errors import ConfigCompositionException

from fashion_lab.config import ConfigError, flatten
from fashion_lab.preflight import validate


def options(group):
    return sorted(p.stem for p in (REPO / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in ("data", "model", "optimizer", "trainer", "tracking",
                                                           "experiment") for o in options(g)])
def test_every_config_option_composes_and_validates(group, option):
    validate(compose([f"{group}={option}"]))


def test_experiment_tutorial_is_the_tutorial_literally():
    cfg = compose(["experiment=tutorial"])
    assert (cfg.trainer.epochs, cfg.trainer.batch_size) == (25, 32)
    assert (cfg.optimizer.name.value, cfg.optimizer.learning_rate, cfg.optimizer.momentum) == ("sgd", 0.01, 0.9)
    assert cfg.optimizer.decay == pytest.approx(0.01 / 25)
    assert list(cfg.model.filters) == [32, 64] and cfg.model.bn_placement.value == "after"


def test_experiment_fast_is_the_tutorial_at_bfloat16():
    fast, tutorial = compose(["experiment=fast"]), compose(["experiment=tutorial"])
    assert fast.trainer.precision.value == "mixed_bfloat16" and tutorial.trainer.precision.value == "float32"
    with open_dict(fast):
        fast.trainer.precision = tutorial.trainer.precision
    assert fast == tutorial  # nothing else differs


def test_switching_optimizer_does_not_inherit_sgd_momentum():
    assert compose(["optimizer=adam"]).optimizer.momentum is None


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "rmsprop"])
def test_the_tutorial_with_another_optimizer_takes_that_optimizers_settings(optimizer):
    """The lecture's "experiment changing the optimizers" on the tutorial: it was refused (SGD's momentum followed)."""
    cfg = compose(["experiment=tutorial", f"optimizer={optimizer}"])
    validate(cfg)
    assert cfg.optimizer == compose([f"optimizer={optimizer}", "optimizer.decay=0.0004"]).optimizer


@pytest.mark.parametrize("override,key", [
    ("optimizer.learning_rate=-1", "optimizer.learning_rate"),
    ("optimizer.learning_rate=0", "optimizer.learning_rate"),
    ("model.conv_dropout=1.0", "model.conv_dropout"),
    ("model.dense_dropout=-0.1", "model.dense_dropout"),
    ("model.filters=[32,0]", "model.filters"),
    ("model.filters=[]", "model.filters"),
    ("model.dense_units=0", "model.dense_units"),
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.batch_size=0", "trainer.batch_size"),
    ("data.val_samples=0", "data.val_samples"),
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose([override]))


def test_momentum_is_refused_for_optimizers_without_it():
    with pytest.raises(ConfigError, match="optimizer.momentum"):
        validate(compose(["optimizer=adam", "optimizer.momentum=0.9"]))


@pytest.mark.parametrize("override,fragment", [
    ("model.bn_placement=sideways", "sideways"),
    ("model.pooling=median", "median"),
    ("optimizer.name=adagrad", "adagrad"),
    ("model.conv_dropuot=0.2", "conv_dropuot"),
    ("trainer.epochs=many", "many"),
])
def test_enums_types_and_typos_fail_at_composition(override, fragment):
    with pytest.raises(ConfigCompositionException) as error:
        compose([override])
    assert fragment in str(error.value) + str(error.value.__cause__)


def test_flatten_gives_dotted_keys_with_plain_values():
    flat = flatten(compose())
    assert flat["model.bn_placement"] == "after" and flat["optimizer.learning_rate"] == 0.01
    assert flat["model.filters"] == [32, 64] and flat["trainer.batch_size"] == 32
    assert all(isinstance(k, str) and "." in k for k in flat)
