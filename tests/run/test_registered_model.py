"""A run that logged no MLflow model is rebuilt from its config.yaml and weights, also when that config.yaml
predates a key: the schema has no default where conf/ states one, so the command's config fills the gap."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import compose
from mlflow import MlflowClient


@pytest.mark.slow  # logs a Keras model (~10 s)
def test_a_run_recorded_before_a_key_existed_is_rebuilt_with_the_commands_value(store):
    from fashion_lab.run.registered_model import log_run_model
    from fashion_lab.run.train import train

    cfg = compose(["data=synthetic", "data.synthetic_train=200", "data.synthetic_test=50", "data.val_samples=50",
                   "trainer.epochs=1", "trainer.verbose=0", "model.filters=[8]", "model.dense_units=16",
                   "tracking.log_plots=false", f"tracking.uri={store}"])
    run_id = train(cfg).run_id
    # as an older version recorded it: no model.conv_stride (a lecture knob added later)
    recorded = Path(urlparse(MlflowClient(store).get_run(run_id).info.artifact_uri).path) / "config.yaml"
    lines = recorded.read_text().splitlines(keepends=True)
    recorded.write_text("".join(line for line in lines if not line.strip().startswith("conv_stride:")))
    assert "conv_stride" not in recorded.read_text()

    uri = log_run_model(cfg, run_id)
    (version,) = MlflowClient(store).search_logged_models([MlflowClient(store).get_run(run_id).info.experiment_id])
    assert uri == f"models:/{version.model_id}" and version.source_run_id == run_id
