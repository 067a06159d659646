"""The data ``model.fit`` reads: Keras' own pipeline for in-memory arrays, with tf.data's autotuner off.

Keras turns arrays into a tf.data pipeline whose autotuner runs a background thread. Each epoch's
iterator joins that thread when it is destroyed, and the join waits out the thread's current sleep,
which grows to seconds: on a 2-core CPU many epochs started seconds late (benchmarks/README.md).
Building the same pipeline here lets us switch the autotuner off. Keras' parallel map then uses every
core and its prefetch buffer still grows, so an in-memory dataset loses nothing.
"""

from __future__ import annotations

import math
from typing import Any


def fit_data(splits, *, batch_size: int, autotune: bool) -> dict[str, Any]:
    """The data arguments of ``model.fit``: the same batches, in the same order, as Keras builds from
    the arrays (the same seed gives the same run), with the autotuner on or off."""
    import keras

    if autotune or keras.backend.backend() != "tensorflow":
        return {"x": splits.x_train, "y": splits.y_train, "batch_size": batch_size,
                "validation_data": (splits.x_val, splits.y_val)}
    return {"x": dataset(splits.x_train, splits.y_train, batch_size=batch_size, shuffle=True),
            "validation_data": dataset(splits.x_val, splits.y_val, batch_size=batch_size, shuffle=False),
            "shuffle": False}  # the dataset shuffles itself; fit would only warn that it cannot


def dataset(x, y, *, batch_size: int, shuffle: bool):
    """Keras' array pipeline (``ArrayDataAdapter``) with the autotuner off and its length known."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    built = ArrayDataAdapter(x, y, batch_size=batch_size, shuffle=shuffle).get_tf_dataset()
    options = tf.data.Options()
    options.autotune.enabled = False
    # flat_map hides the length; Keras' progress bar and callbacks want the steps per epoch.
    steps = math.ceil(len(x) / batch_size)
    return built.apply(tf.data.experimental.assert_cardinality(steps)).with_options(options)
