"""The lecture's remaining knobs: conv stride and padding, pooling geometry, mixed precision."""

import pytest
from conftest import compose
from mlflow import MlflowClient

from fashion_lab.config import ConfigError
from fashion_lab.model.geometry import check_geometry
from fashion_lab.preflight import validate

GEOMETRY = ["model.conv_stride=1", "model.conv_padding=valid", "model.pool_size=3", "model.pool_stride=2"]


def runs_in(store):
    client = MlflowClient(store)
    found = client.get_experiment_by_name("fashion-lab")
    return client.search_runs([found.experiment_id]) if found else []


# --- geometry, checked on the config (no TensorFlow) -----------------------------------------

def test_default_geometry_is_the_tutorials():
    m = compose().model
    assert (m.conv_stride, m.conv_padding.value, m.pool_size, m.pool_stride) == (1, "same", 2, None)
    # two stacks of two same-padded convs, each followed by a 2x2 pooling: 28 -> 14 -> 7
    assert check_geometry(m) == [28, 28, 28, 14, 14, 14, 7]


@pytest.mark.parametrize("overrides", [
    [],
    GEOMETRY,
    ["model.conv_stride=2", "model.filters=[8,16]", "model.pool_size=2", "model.pool_stride=1"],
    ["model.conv_padding=valid", "model.kernel_size=5", "model.pooling=l2", "model=no_bn", "model.dense_units=64"],
])
def test_the_size_estimate_walks_the_same_shapes_as_keras(overrides):
    """One shape walk behind the geometry check and the memory bound: the estimated parameter count
    is Keras' own for any stride, padding and pooling (it once assumed same-padded 2x2 pooling)."""
    from fashion_lab.model.geometry import estimate_size
    from fashion_lab.model.network import build_model

    cfg = compose(overrides)
    params, memory = estimate_size(cfg.model, cfg.trainer.batch_size)
    assert params == build_model(cfg.model).count_params()
    assert memory > 16 * params  # float32 weights, gradients and two optimizer slots at least

def test_valid_padding_and_overlapping_pooling_shrink_as_keras_computes():
    # valid 3x3 convs trim 2 px each; a 3-wide pooling at stride 2 overlaps its windows by one
    assert check_geometry(compose(GEOMETRY).model) == [28, 26, 24, 11, 9, 7, 3]
    # a same-padded conv at stride 2 halves the map, rounding up: 28 -> 14 -> 7, then pooling -> 3
    assert check_geometry(compose(["model.conv_stride=2", "model.filters=[8]"]).model) == [28, 14, 7, 3]


@pytest.mark.parametrize("overrides,key", [
    (["model.kernel_size=29"], "model.kernel_size=29"),              # larger than the 28x28 input
    (["model.pool_size=29"], "model.pool_size=29"),
    (["model.filters=[8,8,8,8,8]"], "model.kernel_size=3"),          # stack 5 gets a 1x1 map
    (["model.filters=[8,8,8,8]", "model.pool_size=3"], "model.kernel_size=3"),
    (["model.conv_stride=2", "model.conv_padding=valid"], "model.kernel_size=3"),
    (["model.conv_stride=3", "model.pool_size=5"], "model.pool_size=5"),   # 28 -> 10 -> 4
    (["model.conv_stride=0"], "model.conv_stride=0"),
    (["model.pool_size=0"], "model.pool_size=0"),
    (["model.pool_stride=0"], "model.pool_stride=0"),
])
def test_shrinking_geometry_is_refused_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as refused:
        validate(compose(overrides))
    message = str(refused.value)
    assert message.startswith(key + " is not allowed") and "\n" not in message


def test_bad_padding_fails_at_composition():
    with pytest.raises(Exception, match="full"):
        compose(["model.conv_padding=full"])


def test_four_stacks_still_fit_the_tutorials_pooling():
    validate(compose(["model.filters=[8,8,8,8]"]))  # 28 -> 14 -> 7 -> 3 -> 1


# --- the built model follows the config ------------------------------------------------------

def test_model_layers_take_stride_padding_and_pool_geometry():
    keras = pytest.importorskip("keras")
    from fashion_lab.model.network import build_model

    cfg = compose(GEOMETRY + ["model.pooling=l2"])
    model = build_model(cfg.model)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    pools = [l for l in model.layers if type(l).__name__ == "L2Pooling2D"]
    assert {(c.strides, c.padding) for c in convs} == {((1, 1), "valid")}
    assert [(p.pool_size, p.strides) for p in pools] == [(3, 2), (3, 2)]
    # every layer's output map is the size check_geometry predicted, in order
    maps = [l.output.shape[1] for l in model.layers if isinstance(l, keras.layers.Conv2D) or l in pools]
    assert maps == check_geometry(cfg.model)[1:]


@pytest.mark.parametrize("pooling", ["max", "avg", "l2"])
def test_overlapping_pooling_runs_for_every_kind(pooling):
    pytest.importorskip("keras")
    import numpy as np

    from fashion_lab.model.network import build_model

    cfg = compose(["model.pool_size=3", "model.pool_stride=1", f"model.pooling={pooling}", "model.filters=[4,8]"])
    model = build_model(cfg.model)
    flatten = next(l for l in model.layers if type(l).__name__ == "Flatten")
    assert flatten.input.shape[1] == check_geometry(cfg.model)[-1] == 24  # each stride-1 pooling trims 2 px
    assert model(np.zeros((2, 28, 28, 1), "float32")).shape == (2, 10)


# --- mixed precision -------------------------------------------------------------------------

def test_bad_precision_fails_at_composition():
    with pytest.raises(Exception, match="float8"):
        compose(["trainer.precision=float8"])


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_computes_low_keeps_float32_weights_and_probabilities_and_does_not_leak(precision):
    keras = pytest.importorskip("keras")
    import numpy as np

    from fashion_lab.model.network import build_model

    model = build_model(compose().model, precision=precision)
    conv = next(l for l in model.layers if isinstance(l, keras.layers.Conv2D))
    assert conv.compute_dtype == precision.split("_")[1] and conv.variable_dtype == "float32"
    assert model.layers[-1].compute_dtype == "float32"  # the softmax
    out = model(np.zeros((2, 28, 28, 1), "float32"))
    assert keras.backend.standardize_dtype(out.dtype) == "float32" and out.shape == (2, 10)
    assert keras.mixed_precision.global_policy().name == "float32"  # nothing leaks to the next build
    assert build_model(compose().model).layers[0].compute_dtype == "float32"


def test_mixed_bfloat16_run_trains_and_records_precision(store):
    from fashion_lab.run.train import train

    cfg = compose(["data=synthetic", "trainer.epochs=2", "trainer.verbose=0", "trainer.precision=mixed_bfloat16",
                   f"tracking.uri={store}"])
    result = train(cfg, overrides=["trainer.precision=mixed_bfloat16"])
    assert result.metrics["best_val_accuracy"] > 0.5  # still learns (chance is 0.1)
    run = MlflowClient(store).get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.params["trainer.precision"] == "mixed_bfloat16"
    import keras

    assert keras.mixed_precision.global_policy().name == "float32"


# --- the acceptance commands -----------------------------------------------------------------

@pytest.mark.slow
def test_cli_trains_with_the_four_geometry_params_recorded(run_cli, store):
    run_cli("train", "data=synthetic", "trainer.epochs=1", *GEOMETRY, f"tracking.uri={store}", check=True)
    (run,) = runs_in(store)
    params = run.data.params
    assert run.info.status == "FINISHED"
    assert (params["model.conv_stride"], params["model.conv_padding"], params["model.pool_size"],
            params["model.pool_stride"]) == ("1", "valid", "3", "2")


@pytest.mark.parametrize("override,key", [
    ("model.kernel_size=29", "model.kernel_size=29"),
    ("model.filters=[8,8,8,8,8]", "model.kernel_size=3"),
    ("trainer.precision=float8", "trainer.precision"),
])
def test_cli_refuses_before_any_run(run_cli, store, tmp_path, override, key):
    result = run_cli("train", "data=synthetic", f"tracking.uri={store}", override)
    assert result.returncode != 0 and key in result.stderr and "float8" not in result.stdout
    assert not (tmp_path / "m.db").exists() or runs_in(store) == []


@pytest.mark.slow
def test_every_corner_of_the_geometry_search_fits_the_input():
    """A search samples any combination of its choices: each must pass the geometry check."""
    import itertools

    from omegaconf import OmegaConf

    from fashion_lab.config import SWEEPS_DIR

    params = OmegaConf.load(SWEEPS_DIR / "geometry_search.yaml").hydra.sweeper.params
    choices = {k: str(v).split(",") for k, v in params.items() if "interval" not in str(v)}
    assert {"model.conv_padding", "model.pool_size", "model.pool_stride"} <= set(choices)
    for values in itertools.product(*choices.values()):
        validate(compose(["sweep=geometry_search"] + [f"{k}={v}" for k, v in zip(choices, values)]))


def test_mixed_float16_compiles_with_loss_scaling():
    """float16 gradients underflow without it; Keras wraps the optimizer for a mixed_float16 model."""
    keras = pytest.importorskip("keras")
    from fashion_lab.model.network import build_model
    from fashion_lab.model.optimizers import build_optimizer

    cfg = compose(["trainer.precision=mixed_float16", "model.filters=[4]"])
    model = build_model(cfg.model, precision=cfg.trainer.precision)
    model.compile(optimizer=build_optimizer(cfg.optimizer), loss="sparse_categorical_crossentropy")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
