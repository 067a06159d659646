"""MLflow models: a run's Keras model logged with MLflow's Keras flavor (loadable and servable by
MLflow's own tools), the model registry, and a run's weights and config downloaded again."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from fashion_lab.record.client import client_for
from fashion_lab.record.names import MODEL_NAME, WEIGHTS_FILE
from fashion_lab.record.owners import package_versions


def download_weights(tracking_cfg, run_id: str, folder: Path) -> Path:
    """The run's weights artifact, downloaded into ``folder``; LookupError when the run logged none."""
    client = client_for(tracking_cfg)
    if WEIGHTS_FILE not in {f.path for f in client.list_artifacts(run_id)}:
        raise LookupError(f"run {run_id} has no {WEIGHTS_FILE} (it ran with tracking.log_weights=false)")
    return Path(client.download_artifacts(run_id, WEIGHTS_FILE, str(folder)))


def registered_version(tracking_cfg, name: str, run_id: str) -> Optional[str]:
    """The version of registered model ``name`` already made from this run, if any."""
    found = client_for(tracking_cfg).search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return found[0].version if found else None


def _keras_signature(input_shape, num_classes: int):
    """float32 images (N, 28, 28, 1) in, float32 class probabilities (N, 10) out."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype("float32"), (-1, *input_shape))]),
                          outputs=Schema([TensorSpec(np.dtype("float32"), (-1, num_classes))]))


def log_keras_model(tracking_cfg, run_id: str, model) -> str:
    """Log ``model`` to the run with MLflow's Keras flavor; returns its ``models:/`` URI.

    ``Model.log(flavor=mlflow.keras, run_id=...)`` is what ``mlflow.keras.log_model`` calls, minus
    the need for an active fluent run (resuming the run would flip its status). The requirements
    are given, not inferred: inference re-imports the model in a subprocess (about 10 s).
    """
    import mlflow
    from mlflow.models import Model

    client = client_for(tracking_cfg)  # also points the fluent API at the configured store
    # The logged model belongs to its run's experiment, which Model.log takes from the fluent API.
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    versions = package_versions()
    requirements = [f"{name}=={versions[name]}" for name in ("tensorflow", "keras", "mlflow") if name in versions]
    # A fashion-lab layer (L2 pooling) loads only where fashion_lab is imported; exported as a TF
    # SavedModel, the network serves anywhere TensorFlow does.
    custom = any(type(layer).__module__.startswith("fashion_lab") for layer in model.layers)
    info = Model.log(artifact_path=None, name=MODEL_NAME, flavor=mlflow.keras, model=model, run_id=run_id,
                     signature=_keras_signature(model.input_shape[1:], model.output_shape[-1]),
                     pip_requirements=requirements, save_exported_model=custom)
    return info.model_uri


def register_model(tracking_cfg, model_uri: str, name: str, *, tags: dict[str, str], description: str) -> str:
    """A new version of registered model ``name`` pointing at a logged MLflow model; returns the version."""
    import mlflow

    client = client_for(tracking_cfg)
    version = mlflow.register_model(model_uri, name, tags=tags)
    client.update_model_version(name, version.version, description=description)
    return version.version


def logged_model_uri(tracking_cfg, run_id: str) -> Optional[str]:
    """``models:/ID`` of the MLflow model a run logged itself (tracking.log_model=true), else None."""
    import mlflow

    client = client_for(tracking_cfg)
    logged = mlflow.search_logged_models(experiment_ids=[client.get_run(run_id).info.experiment_id],
                                         filter_string=f"source_run_id = '{run_id}'", output_format="list")
    return f"models:/{logged[0].model_id}" if logged else None


def download_model_files(tracking_cfg, run_id: str, folder: str) -> tuple[str, str]:
    """(config.yaml, model.weights.h5) of a recorded run, downloaded into ``folder``; LookupError
    when the run kept no weights."""
    client = client_for(tracking_cfg)
    if WEIGHTS_FILE not in {f.path for f in client.list_artifacts(run_id)}:
        raise LookupError(f"run {run_id} has no {WEIGHTS_FILE} to rebuild its model from "
                          "(it ran with tracking.log_weights=false); use tracking.log_model=true")
    return (client.download_artifacts(run_id, "config.yaml", folder),
            client.download_artifacts(run_id, WEIGHTS_FILE, folder))
