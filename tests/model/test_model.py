"""build_model reproduces the tutorial network and builds every variant the configs name."""

import numpy as np
import pytest
from conftest import compose

keras = pytest.importorskip("keras")
from keras import layers  # noqa: E402

from fashion_lab.model.network import L2Pooling2D, build_model  # noqa: E402


def tutorial_by_hand() -> keras.Model:
    """The tutorial's network written out layer by layer (Keras 3 spelling)."""
    def conv(n):
        return [layers.Conv2D(n, (3, 3), padding="same"), layers.Activation("relu"), layers.BatchNormalization()]

    return keras.Sequential(
        [keras.Input((28, 28, 1))] + conv(32) + conv(32) + [layers.MaxPooling2D((2, 2))]
        + conv(64) + conv(64) + [layers.MaxPooling2D((2, 2))]
        + [layers.Flatten(), layers.Dense(512), layers.Activation("relu"), layers.BatchNormalization(),
           layers.Dropout(0.5), layers.Dense(10), layers.Activation("softmax")])


def layer_kinds(model):
    return [type(layer).__name__ for layer in model.layers]


def test_default_model_is_the_tutorial_network():
    model = build_model(compose().model)
    reference = tutorial_by_hand()
    assert model.count_params() == reference.count_params() == 1_679_082
    assert layer_kinds(model) == layer_kinds(reference)


def test_bn_before_puts_batch_norm_between_conv_and_relu():
    kinds = layer_kinds(build_model(compose(["model=bn_before"]).model))
    assert kinds[:3] == ["Conv2D", "BatchNormalization", "Activation"]


def test_no_bn_has_no_batch_norm_and_fewer_params():
    model = build_model(compose(["model=no_bn"]).model)
    assert "BatchNormalization" not in layer_kinds(model)
    assert model.count_params() == 1_679_082 - 4 * (32 + 32 + 64 + 64 + 512)  # BN: gamma, beta, mean, variance


def test_conv_dropout_follows_each_pooling():
    kinds = layer_kinds(build_model(compose(["model=conv_dropout"]).model))
    pools = [i for i, k in enumerate(kinds) if k == "MaxPooling2D"]
    assert len(pools) == 2 and all(kinds[i + 1] == "Dropout" for i in pools)


@pytest.mark.parametrize("pooling,kind", [("max", "MaxPooling2D"), ("avg", "AveragePooling2D"),
                                          ("l2", "L2Pooling2D")])
def test_pooling_kinds(pooling, kind):
    model = build_model(compose([f"model.pooling={pooling}"]).model)
    assert layer_kinds(model).count(kind) == 2
    assert model.output_shape == (None, 10)


def test_wider_deeper_variants_change_shapes():
    model = build_model(compose(["model.filters=[16,32,64]", "model.convs_per_stack=1", "model.dense_units=64",
                                 "model.kernel_size=5"]).model)
    convs = [layer for layer in model.layers if isinstance(layer, layers.Conv2D)]
    assert [c.filters for c in convs] == [16, 32, 64] and convs[0].kernel_size == (5, 5)
    assert model(np.zeros((2, 28, 28, 1), "float32")).shape == (2, 10)


def test_l2_pooling_is_the_root_sum_of_squares_of_each_window():
    x = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
    out = keras.ops.convert_to_numpy(L2Pooling2D(pool_size=2)(x))[0, :, :, 0]
    expected = np.sqrt(np.array([[0 + 1 + 16 + 25, 4 + 9 + 36 + 49], [64 + 81 + 144 + 169, 100 + 121 + 196 + 225]]))
    np.testing.assert_allclose(out, expected, rtol=1e-5)
