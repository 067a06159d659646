"""The reference: the Fashion-MNIST tutorial CNN in plain Keras, no fashion-lab in the training path.

Same network, optimizer (SGD lr 0.01, momentum 0.9), batch size and data arrays as
``fashion-lab train`` so the two can be timed side by side. The arrays come from
``fashion_lab.data.load_data`` only so that both sides train on identical images.

    python benchmarks/tutorial_keras.py --train-samples 5000 --epochs 2 --json

Knob flags (--jit, --pipeline, --intra/--inter, --batch-size) exist for benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_model():
    """The tutorial's network, written out layer by layer."""
    from keras import Input, Sequential, layers

    def conv(filters):
        return [layers.Conv2D(filters, 3, padding="same"), layers.Activation("relu"),
                layers.BatchNormalization()]

    return Sequential([
        Input((28, 28, 1)),
        *conv(32), *conv(32), layers.MaxPooling2D(2),
        *conv(64), *conv(64), layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(512), layers.Activation("relu"), layers.BatchNormalization(), layers.Dropout(0.5),
        layers.Dense(10), layers.Activation("softmax"),
    ])


def load_arrays(train_samples, val_samples):
    from omegaconf import OmegaConf

    from fashion_lab.config import DataConfig, DataName
    from fashion_lab.data import load_data

    cfg = OmegaConf.structured(DataConfig(name=DataName.fashion_mnist, train_samples=train_samples, val_samples=val_samples))
    s = load_data(cfg)
    return s.x_train, s.y_train, s.x_val, s.y_val


def as_dataset(x, y, batch_size, shuffle):
    """tf.data variant: cache the arrays, shuffle indices, slice whole batches, prefetch."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y)).cache()
    if shuffle:
        ds = ds.shuffle(len(x), reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def keras_dataset_without_autotune(x, y, batch_size, shuffle):
    """Keras' own pipeline for arrays (what fit builds from x, y), with tf.data's autotuning model thread off.

    That thread is joined when an epoch's iterator is destroyed and may first finish a wait of up to its
    current optimisation period (it doubles from 10 ms), which stalls the next epoch's start."""
    import tensorflow as tf
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    dataset = ArrayDataAdapter(x, y, batch_size=batch_size, shuffle=shuffle).get_tf_dataset()
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


class EpochTimer:
    """Wall time of each epoch (begin -> end, validation included), as fashion-lab's EpochLogger measures."""

    def __init__(self):
        import keras

        class _Cb(keras.callbacks.Callback):
            def on_epoch_begin(cb, epoch, logs=None):
                cb.start = time.perf_counter()

            def on_epoch_end(cb, epoch, logs=None):
                self.seconds.append(time.perf_counter() - cb.start)

        self.seconds: list[float] = []
        self.callback = _Cb()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-samples", type=int, default=None, help="default: all 55000")
    p.add_argument("--val-samples", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--jit", action="store_true", help="XLA: compile(jit_compile=True)")
    p.add_argument("--pipeline", choices=["arrays", "tf_data", "no_autotune"], default="arrays")
    p.add_argument("--intra", type=int, default=None)
    p.add_argument("--inter", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--terminate-on-nan", action="store_true",
                   help="add keras.callbacks.TerminateOnNaN (fashion-lab's only per-step addition)")
    p.add_argument("--json", action="store_true", help="print one JSON line of timings")
    a = p.parse_args(argv)

    import keras
    import tensorflow as tf

    if a.intra:
        tf.config.threading.set_intra_op_parallelism_threads(a.intra)
    if a.inter:
        tf.config.threading.set_inter_op_parallelism_threads(a.inter)
    keras.utils.set_random_seed(a.seed)
    x, y, xv, yv = load_arrays(a.train_samples, a.val_samples)

    model = build_model()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=a.jit)
    timer = EpochTimer()
    if a.pipeline == "tf_data":
        fit_args = dict(x=as_dataset(x, y, a.batch_size, True),
                        validation_data=as_dataset(xv, yv, a.batch_size, False))
    elif a.pipeline == "no_autotune":
        fit_args = dict(x=keras_dataset_without_autotune(x, y, a.batch_size, True),
                        validation_data=keras_dataset_without_autotune(xv, yv, a.batch_size, False))
    else:
        fit_args = dict(x=x, y=y, validation_data=(xv, yv), batch_size=a.batch_size)
    history = model.fit(**fit_args, epochs=a.epochs, callbacks=[timer.callback] + ([keras.callbacks.TerminateOnNaN()] if a.terminate_on_nan else []), verbose=0 if a.json else 2)
    result = {"epoch_seconds": timer.seconds, "train_images": int(len(x)),
              "val_accuracy": [float(v) for v in history.history["val_accuracy"]]}
    print(json.dumps(result) if a.json else result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
