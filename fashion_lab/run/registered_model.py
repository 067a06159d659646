"""A recorded run's network as an MLflow model: the one it logged, or rebuilt from its config and weights."""

from __future__ import annotations

import tempfile

from omegaconf import OmegaConf

from fashion_lab.record import tracking


def log_run_model(cfg, run_id: str) -> str:
    """The run's MLflow model URI; when it logged none, its network is rebuilt from its ``config.yaml``
    and ``model.weights.h5`` and logged to it (a search's best trial may have trained in another process).
    ``cfg`` is the calling command's config: its tracking settings, and the values of keys the run's older
    config.yaml lacks (the schema has no defaults where conf/ states them)."""
    from fashion_lab.model.network import build_model

    tracking_cfg = cfg.tracking
    uri = tracking.logged_model_uri(tracking_cfg, run_id)
    if uri:
        return uri
    with tempfile.TemporaryDirectory(prefix="fashion-lab-model-") as folder:
        config_file, weights_file = tracking.download_model_files(tracking_cfg, run_id, folder)
        # onto this command's config, so a run logged before a key existed gets that key's value (as reproduce does)
        run_cfg = OmegaConf.merge(cfg, OmegaConf.load(config_file))
        model = build_model(run_cfg.model, precision=run_cfg.trainer.precision)
        model.load_weights(weights_file)
    return tracking.log_keras_model(tracking_cfg, run_id, model)
