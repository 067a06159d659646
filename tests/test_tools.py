"""The tools around the model: TensorBoard logs, the MLflow Keras model and its registry version."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_env, compose
from mlflow import MlflowClient

TINY = ["data=synthetic", "data.synthetic_train=200", "data.synthetic_test=50", "data.val_samples=50",
        "trainer.epochs=2", "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=32"]


def scalars(event_dir: Path) -> dict[str, list[float]]:
    """The per-epoch scalars TensorBoard finds in a folder of event files, by tag, in step order."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(event_dir), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    found = {tag: [float(s.value) for s in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    for tag in acc.Tags()["tensors"]:  # Keras 3 writes scalars as tensor summaries (and the model config)
        if tag.startswith("epoch_"):
            found[tag] = [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
    return found


def test_tensorboard_logs_are_an_artifact_with_the_epoch_scalars(store, tmp_path):
    from fashion_lab.train import train

    cfg = compose(TINY + ["tracking.tensorboard=true", f"tracking.uri={store}"])
    result = train(cfg, run_name="bn after")
    client = MlflowClient(store)
    folder = Path(client.download_artifacts(result.run_id, "tensorboard", str(tmp_path)))
    events = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("events.out.tfevents.*"))
    assert {e.rsplit("/", 1)[0] for e in events} == {"bn after/train", "bn after/validation"}
    train_scalars = scalars(folder / "bn after" / "train")
    validation = scalars(folder / "bn after" / "validation")
    # one point per epoch, equal to what MLflow recorded for the same epochs
    assert train_scalars["epoch_loss"] == pytest.approx(result.history["loss"].tolist(), rel=1e-5)
    assert validation["epoch_accuracy"] == pytest.approx(result.history["val_accuracy"].tolist(), rel=1e-5)
    # write_graph=True, as in the tutorial: the model's (conceptual) graph, TensorBoard's "keras" summary
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder / "bn after" / "train"))
    acc.Reload()
    assert b'"class_name": "Sequential"' in acc.Tensors("keras")[0].tensor_proto.string_val[0]


def test_tensorboard_is_off_by_default(synthetic_cfg):
    assert synthetic_cfg.tracking.tensorboard is False
