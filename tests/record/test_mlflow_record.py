"""MLflow's own tools read the record as their users expect: system tags, whose git commit, datasets."""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from conftest import REPO, compose
from mlflow import MlflowClient

from fashion_lab.record import owners, tracking
from fashion_lab.data import DEBIAN_DIR, FILES
from fashion_lab.run.train import train

TINY = ["data=synthetic", "trainer.epochs=1", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=32"]


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def users_repo(tmp_path) -> Path:
    """The user's own git repository (their sweep files), with one commit."""
    work = tmp_path / "work"
    (work / "sweeps").mkdir(parents=True)
    (work / "sweeps" / "mine.yaml").write_text("# my sweep\n")
    git(work, "init", "-q")
    git(work, "add", ".")
    git(work, "commit", "-qm", "my sweep")
    return work


def test_runs_carry_mlflow_system_tags_and_fashion_labs_own_commit(users_repo, monkeypatch):
    """Run from inside another repository: MLflow's commit tag is fashion-lab's, the user's is its own tag."""
    monkeypatch.chdir(users_repo)
    store = f"sqlite:///{users_repo.parent / 'm.db'}"
    cfg = compose(TINY + [f"tracking.uri={store}"])
    result = train(cfg)
    parent = tracking.open_parent_run(cfg.tracking, name="p", role="sweep", strategy="grid", sweep_name="p",
                                      swept_keys=["model.conv_dropout"], definition="# p\n")
    ours, theirs = git(REPO, "rev-parse", "HEAD"), git(users_repo, "rev-parse", "HEAD")
    assert ours != theirs
    client = MlflowClient(store)
    for run_id in (result.run_id, parent):
        tags = client.get_run(run_id).data.tags
        assert tags["mlflow.user"] == getpass.getuser()
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"] == sys.argv[0]
        assert tags["mlflow.source.git.commit"] == ours == tags["fashion_lab.git_commit"]
        assert tags["fashion_lab.workdir.git_commit"] == theirs


def test_a_foreign_repositorys_head_is_never_recorded_as_fashion_labs(users_repo, monkeypatch):
    """fashion-lab installed inside the user's repository (a venv there), not tracked by it: no commit of ours."""
    package = users_repo / "venv" / "site-packages" / "fashion_lab"
    package.mkdir(parents=True)
    shutil.copy(owners.__file__, package / "owners.py")  # present, but untracked
    installed = owners.PACKAGE_DIR  # owners reads it (tracking only re-exports it)
    monkeypatch.chdir(users_repo)
    owners._checkout.cache_clear()
    try:
        owners.PACKAGE_DIR = package
        tags = tracking.commit_tags()
    finally:
        owners.PACKAGE_DIR = installed
        owners._checkout.cache_clear()
    assert tags == {"fashion_lab.workdir.git_commit": git(users_repo, "rev-parse", "HEAD")}
    # from fashion-lab's own checkout, its working folder is no other repository
    monkeypatch.chdir(REPO)
    assert set(tracking.commit_tags()) == {"fashion_lab.git_commit", "mlflow.source.git.commit"}


def inputs_by_context(store: str, run_id: str) -> dict:
    inputs = MlflowClient(store).get_run(run_id).inputs.dataset_inputs
    found = {}
    for item in inputs:
        (context,) = [t.value for t in item.tags if t.key == "mlflow.data.context"]
        found[context] = item
    assert len(found) == len(inputs) == 3
    return found


def check_schema_and_profile(item, rows: int) -> dict:
    from mlflow.data.schema import TensorDatasetSchema

    schema = TensorDatasetSchema.from_dict(json.loads(item.dataset.schema))
    (features,), (targets,) = schema.features.inputs, schema.targets.inputs
    assert (str(features.type), features.shape) == ("float32", (-1, 28, 28, 1))
    assert (str(targets.type), targets.shape) == ("int64", (-1,))
    profile = json.loads(item.dataset.profile)
    assert profile["num_rows"] == rows and profile["features_shape"] == [rows, 28, 28, 1]
    return profile


def test_synthetic_data_is_three_mlflow_datasets_plainly_labelled(store):
    cfg = compose(TINY + [f"tracking.uri={store}"])
    result = train(cfg)
    tags = MlflowClient(store).get_run(result.run_id).data.tags
    found = inputs_by_context(store, result.run_id)
    assert set(found) == {"training", "validation", "test"}
    digests = {context: item.dataset.digest for context, item in found.items()}
    assert len(set(digests.values())) == 3  # each split is its own content
    for context, rows in (("training", 240), ("validation", 60), ("test", 100)):
        profile = check_schema_and_profile(found[context], rows)
        assert profile["source_digest"] == tags["fashion_lab.data_digest"]
        source = mlflow.data.get_source(found[context])
        assert source._get_source_type() == "code"
        labels = source.to_dict()["tags"]
        assert labels["fashion_lab.data"].startswith("synthetic") and labels["fashion_lab.data.synthetic_train"] == "300"
    # another split of the same data: new training and validation digests, the same test set
    other = train(compose(TINY + [f"tracking.uri={store}", "data.val_samples=50"]))
    changed = {c: i.dataset.digest for c, i in inputs_by_context(store, other.run_id).items()}
    assert changed["test"] == digests["test"] and changed["training"] != digests["training"]


@pytest.mark.skipif(not all((DEBIAN_DIR / name).exists() for name in FILES.values()),
                    reason="needs `apt-get install dataset-fashion-mnist`")
def test_fashion_mnist_datasets_load_the_debian_packages_idx_files(store):
    cfg = compose(["data=fashion_mnist", "data.train_samples=200", "data.val_samples=100", "trainer.epochs=1",
                   "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=32", f"tracking.uri={store}"])
    result = train(cfg)
    found = inputs_by_context(store, result.run_id)
    for context, rows, prefix in (("training", 200, "train-"), ("validation", 100, "train-"),
                                  ("test", 10_000, "t10k-")):
        profile = check_schema_and_profile(found[context], rows)
        assert profile["origin"].startswith("Debian package dataset-fashion-mnist")
        assert all(name.startswith(prefix) for name in profile["files"]) and len(profile["files"]) == 2
        folder = Path(mlflow.data.get_source(found[context]).load())
        assert folder.resolve() == DEBIAN_DIR.resolve()
        assert set(profile["files"]) <= {p.name for p in folder.iterdir()}


def test_the_run_record_holds_a_real_run(tmp_path):
    from fashion_lab.record import tracking
    from fashion_lab.record.run_record import RunRecord

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment = client.create_experiment("e")
    made = client.create_run(experiment, tags={tracking.TAG + "overrides": "trainer.epochs=1",
                                               "mlflow.runName": "one"})
    client.log_param(made.info.run_id, "trainer.epochs", "1")
    client.log_metric(made.info.run_id, "test_accuracy", 0.5)
    client.set_terminated(made.info.run_id, status="FINISHED")
    _, record = tracking.get_run(uri, made.info.run_id)
    assert isinstance(record, RunRecord) and record.run_id == made.info.run_id
    assert (record.experiment_id, record.name, record.status) == (experiment, "one", "FINISHED")
    assert record.params == {"trainer.epochs": "1"} and record.metrics == {"test_accuracy": 0.5}
    assert record.tag("overrides") == "trainer.epochs=1" and record.seconds is not None and record.seconds >= 0
