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
from conftest import FASHION_LAB, cli_env, compose
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
    from fashion_lab.run.train import train

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


# --- the registered model is an MLflow Keras model ------------------------------------------

ZEROS = np.zeros((2, 28, 28, 1), "float32")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A real two-trial search through the CLI; (store, tmp folder). The acceptance command, made tiny."""
    folder = tmp_path_factory.mktemp("search")
    store = f"sqlite:///{folder / 'm.db'}"
    result = subprocess.run(
        [FASHION_LAB, "tune", *TINY, "tuner.max_trials=2", "tuner.fresh_process=false",
         f"tracking.uri={store}"], cwd=folder, capture_output=True, text=True, timeout=600, env=cli_env(),
        stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "registered model fashion-lab-cnn version 1" in result.stdout
    return store, folder


@pytest.mark.slow
def test_registered_version_loads_with_pyfunc_and_predicts_probabilities(searched, tmp_path):
    import mlflow
    from omegaconf import OmegaConf

    from fashion_lab.model.network import build_model

    store, _ = searched
    mlflow.set_tracking_uri(store)
    loaded = mlflow.pyfunc.load_model("models:/fashion-lab-cnn/latest")
    probabilities = np.asarray(loaded.predict(ZEROS))
    assert probabilities.shape == (2, 10) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    # the signature MLflow checks inputs against: float32 images
    (spec,) = loaded.metadata.get_input_schema().inputs
    assert spec.type == np.dtype("float32") and spec.shape == (-1, 28, 28, 1)
    # it is the best trial's network: the run's config.yaml + model.weights.h5 predict the same
    client = MlflowClient(store)
    version = client.get_model_version("fashion-lab-cnn", "1")
    cfg = OmegaConf.load(client.download_artifacts(version.run_id, "config.yaml", str(tmp_path)))
    model = build_model(cfg.model)
    model.load_weights(client.download_artifacts(version.run_id, "model.weights.h5", str(tmp_path)))
    images = np.random.default_rng(0).random((4, 28, 28, 1), dtype="float32")
    np.testing.assert_allclose(np.asarray(loaded.predict(images)), model.predict(images, verbose=0), atol=1e-5)
    assert version.tags["fashion_lab.trial_id"] in {"0", "1"}
    # the logged model sits in its run's experiment, next to the run (not in MLflow's Default one)
    (logged,) = mlflow.search_logged_models(experiment_ids=[client.get_run(version.run_id).info.experiment_id],
                                            output_format="list")
    assert logged.source_run_id == version.run_id


@pytest.mark.parametrize("pooling", ["max", pytest.param("l2", marks=pytest.mark.slow)])
def test_a_single_run_opts_in_with_log_model_loadable_without_fashion_lab(store, pooling):
    """The logged model loads in a fresh process that never imports fashion_lab (L2 pooling included)."""
    import json

    import mlflow

    from fashion_lab.run.train import train

    result = train(compose(TINY + [f"model.pooling={pooling}", "tracking.log_model=true", f"tracking.uri={store}"]))
    mlflow.set_tracking_uri(store)
    (logged,) = mlflow.search_logged_models(filter_string=f"source_run_id = '{result.run_id}'", output_format="list")
    probe = ("import json, mlflow, numpy as np, sys; "
             f"m = mlflow.pyfunc.load_model('models:/{logged.model_id}'); "
             "print(json.dumps(np.asarray(m.predict(np.zeros((2, 28, 28, 1), 'float32'))).tolist())); "
             "assert not any(name.startswith('fashion_lab') for name in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                         env=cli_env(MLFLOW_TRACKING_URI=store))
    assert out.returncode == 0, out.stderr[-2000:]
    predicted = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(predicted, result.model.predict(ZEROS, verbose=0), atol=1e-5)
    assert MlflowClient(store).get_run(result.run_id).info.status == "FINISHED"


@pytest.mark.slow  # starts a real model server
def test_mlflow_models_serve_answers_invocations(searched):
    import json

    store, folder = searched
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/fashion-lab-cnn/1", "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port)], cwd=folder, env=cli_env(MLFLOW_TRACKING_URI=store),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # its own process group
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "the model server did not start"
                time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations", data=json.dumps({"inputs": ZEROS.tolist()}).encode(),
            headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
        predictions = np.asarray(answer["predictions"])
        assert predictions.shape == (2, 10) and np.allclose(predictions.sum(axis=1), 1.0, atol=1e-5)
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers, nothing else
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.slow
def test_keras_tuner_reopens_a_finished_search(searched, capsys):
    """KerasTuner's own Tuner on the search's folder (overwrite=False) sees its trials and their best."""
    import keras_tuner as kt

    store, folder = searched
    tuner = kt.RandomSearch(lambda hp: None, objective="val_accuracy", directory=str(folder / "outputs" / "tuner"),
                            project_name="search", overwrite=False)
    trials = tuner.oracle.trials
    assert len(trials) == 2 and {t.status for t in trials.values()} == {"COMPLETED"}
    capsys.readouterr()
    tuner.results_summary(num_trials=2)
    summary = capsys.readouterr().out
    assert "Trial 0 summary" in summary and "Trial 1 summary" in summary and "model.conv_dropout" in summary
    client = MlflowClient(store)
    (parent,) = client.search_runs([client.get_experiment_by_name("fashion-lab").experiment_id],
                                   "tags.`fashion_lab.role` = 'search'")
    best = tuner.oracle.get_best_trials(1)[0]
    # a reopened Tuner breaks ties in glob order; the record names the earliest of the tied trials
    recorded = trials[parent.data.tags["fashion_lab.summary.best_trial_id"]]
    assert recorded.score == best.score
    tied = sorted((t for t in trials.values() if t.score == best.score), key=lambda t: int(t.trial_id))
    assert recorded.trial_id == tied[0].trial_id
    assert best.score == pytest.approx(parent.data.metrics["best_trial_val_accuracy"])
    # the best hyperparameters are what the best run trained with
    params = client.get_run(parent.data.tags["fashion_lab.summary.best_run_id"]).data.params
    values = recorded.hyperparameters.values
    assert values
    for key, value in values.items():
        logged = params[f"{key}.name" if key == "optimizer" else key]
        if isinstance(value, str):
            assert logged == value, key
        else:
            assert float(logged) == pytest.approx(float(value), rel=1e-5), key


# --- shell completion -------------------------------------------------------------------------

def test_shell_completion_script_completes_commands_and_overrides(run_cli, tmp_path):
    script = run_cli("train", "--shell-completion", "install=bash", check=True).stdout
    assert "complete -o nospace -o default -F _fashion_lab_complete fashion-lab" in script
    # a real bash sources it and completes through the installed `fashion-lab` on PATH
    bin_dir = Path(FASHION_LAB).parent
    (tmp_path / "completion.bash").write_text(script)
    probe = ('source completion.bash\n'
             't() { COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"; _fashion_lab_complete; '
             'echo "${COMPREPLY[*]}"; }\n'
             't fashion-lab tu\n'
             't fashion-lab train data=synthetic model.conv_\n')
    env = cli_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = subprocess.run(["bash", "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=120).stdout.splitlines()
    assert out[0] == "tune"
    assert set(out[1].split()) == {"model.conv_dropout=", "model.conv_padding=", "model.conv_stride="}


def test_shell_completion_refuses_an_unknown_shell(run_cli):
    result = run_cli("train", "--shell-completion", "install=tcsh")
    assert result.returncode == 2 and "tcsh" in result.stderr and "bash" in result.stderr


def test_registering_reuses_a_model_the_run_logged_itself(store):
    """A trial that ran with tracking.log_model=true is registered with that model, not a second copy."""
    import mlflow

    from fashion_lab.record import tracking
    from fashion_lab.run.registered_model import log_run_model
    from fashion_lab.run.train import train

    cfg = compose(TINY + ["tracking.log_model=true", f"tracking.uri={store}"])
    result = train(cfg)
    uri = log_run_model(cfg, result.run_id)
    experiment = MlflowClient(store).get_run(result.run_id).info.experiment_id
    (logged,) = mlflow.search_logged_models(experiment_ids=[experiment], output_format="list")  # its run's
    assert uri == f"models:/{logged.model_id}" and logged.source_run_id == result.run_id
    version = tracking.register_model(cfg.tracking, uri, "fashion-lab-cnn", tags={}, description="test")
    assert MlflowClient(store).get_model_version("fashion-lab-cnn", version).run_id == result.run_id


@pytest.mark.parametrize("name", [".", "..", "", "...", " . ", "../x", "a/b", "/etc"])
def test_a_run_name_never_makes_the_tensorboard_copy_leave_its_scratch(name, tmp_path, monkeypatch):
    """tracking.run_name=. made the log folder the scratch folder itself: the copy took all of $TMPDIR."""
    import tempfile

    from fashion_lab.run.tensorboard_logs import _folder_name, tensorboard_logs

    folder = _folder_name(name)
    assert folder not in ("", ".", "..") and "/" not in folder
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "someone-elses.txt").write_text("private")
    artifacts = tmp_path / "artifacts"
    with tensorboard_logs(True, name) as board:
        (board.log_dir / "train").mkdir(parents=True)  # what Keras writes during fit
        (board.log_dir / "train" / "events").write_text("e")
        board.copy_into(artifacts)
    copied = sorted(p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file())
    assert copied == [f"tensorboard/{folder}/train/events"]
