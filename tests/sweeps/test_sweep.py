"""Grid sweeps (issue 3): real multiruns through the CLI, real sqlite stores, real Keras training."""

from __future__ import annotations

import pytest

from fashion_lab.sweeps import grid as sweep
from fashion_lab.config import SWEEPS_DIR
from fashion_lab.preflight import validate
from conftest import compose
from helpers.sweeps import TINY, runs_in


def compose_sweep(name: str, extra: list[str] = ()):
    """A sweep file's config with its hydra node (for hydra.sweeper.params)."""
    from hydra import compose, initialize_config_dir
    from fashion_lab.config import CONF_DIR, register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[f"sweep={name}", *extra], return_hydra_config=True)


def test_list_shows_every_sweep_with_description_and_size(run_cli):
    result = run_cli("sweep", "--list", check=True)
    for path in SWEEPS_DIR.glob("*.yaml"):
        line = next(l for l in result.stdout.splitlines() if l.split()[0] == path.stem)
        assert sweep.description(path) in line and sweep.size(path) in line
    assert "18 points" in next(l for l in result.stdout.splitlines() if l.startswith("ablation"))


@pytest.mark.parametrize("name", sorted(sweep.sweep_files()))
def test_every_sweep_point_composes_and_validates(name):
    from hydra import compose, initialize_config_dir
    from fashion_lab.config import CONF_DIR

    path = SWEEPS_DIR / f"{name}.yaml"
    assert sweep.description(path), f"{path} needs a first comment line describing it"
    cfg = compose_sweep(name)
    dims = sweep.dimensions({str(k): str(v) for k, v in cfg.hydra.sweeper.params.items()})
    assert sweep.swept_keys(dims), f"{name} varies nothing"
    if cfg.sweep.strategy != "grid":
        return  # a tuner's space: composed and checked by fashion_lab.search.study
    points = sweep.points(dims)
    assert f"{len(points) * cfg.sweep.seeds} points" == sweep.size(path)  # sweep.seeds repeats each point
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for point in points:
            validate(compose(config_name="config", overrides=[f"sweep={name}", *point]))


def test_point_names_and_job_threads():
    keys = ["model.bn_placement", "model.conv_dropout", "optimizer"]
    overrides = ["data=synthetic", "model.conv_dropout=0.25", "model.bn_placement=before", "optimizer=adam"]
    assert sweep.point_name(overrides, keys) == "bn_placement=before conv_dropout=0.25 optimizer=adam"
    joblib = {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher", "n_jobs": 2}
    assert sweep.job_threads(joblib, cores=8) == 4
    assert sweep.job_threads({**joblib, "n_jobs": -1}, cores=2) == 1
    assert sweep.job_threads({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}) is None


@pytest.mark.slow
def test_multirun_records_one_parent_and_named_children(run_cli, store):
    result = run_cli("train", "-m", *TINY, "model.bn_placement=before,after", f"tracking.uri={store}")
    assert result.returncode == 0, result.stderr
    parents, children = runs_in(store)
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["fashion_lab.role"] == "sweep"
    assert parent.data.tags["fashion_lab.swept_keys"] == "model.bn_placement"
    assert sorted(c.info.run_name for c in children) == ["bn_placement=after", "bn_placement=before"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.tags["fashion_lab.sweep_id"] == parent.info.run_id
        assert child.data.tags["fashion_lab.role"] == "point"
    best = max(c.data.metrics["best_val_accuracy"] for c in children)
    assert parent.data.metrics["points_finished"] == 2 and parent.data.metrics["points_failed"] == 0
    assert parent.data.metrics["best_val_accuracy"] == pytest.approx(best)
    assert "val_accuracy" in result.stdout and "bn_placement" in result.stdout


@pytest.mark.slow
def test_failed_point_is_recorded_and_reported(run_cli, store):
    # lr 1e30 makes the loss NaN within the first epoch (checked by hand; 1e6 and 1e9 did not).
    result = run_cli("sweep", "learning_rate", *TINY, "optimizer.learning_rate=0.01,1e30", f"tracking.uri={store}")
    assert result.returncode != 0
    parents, children = runs_in(store)
    assert len(parents) == 1 and len(children) == 2
    status = {c.info.run_name: c.info.status for c in children}
    assert status == {"learning_rate=0.01": "FINISHED", "learning_rate=1e+30": "FAILED"}
    failed = next(c for c in children if c.info.status == "FAILED")
    assert "TrainingDiverged" in failed.data.tags["fashion_lab.failure"]
    assert "FAILED point learning_rate=1e+30" in result.stderr
    assert parents[0].data.tags["fashion_lab.sweep_name"] == "learning_rate"
    assert parents[0].data.metrics["points_failed"] == 1
    assert parents[0].data.tags["fashion_lab.summary.best_point"] == "learning_rate=0.01"


@pytest.mark.parametrize("args, message", [
    (["sweep", "nosuchsweep"], "unknown sweep 'nosuchsweep'; available: "),
    (["train", "-m", "model.bn_placment=before,after"], "bn_placment"),
    (["train", "-m", "model.bn_placement=before,sideways"], "sideways"),
    (["train", "-m", "model.conv_dropout=0,1.5"], "model.conv_dropout=1.5 is not allowed"),
    (["sweep", "bn_placement", "model.conv_dropout=interval(0,0.5)"], "range"),
])
def test_bad_sweeps_fail_before_any_run(run_cli, store, args, message):
    result = run_cli(*args, "data=synthetic", f"tracking.uri={store}", timeout=120)
    assert result.returncode != 0
    assert message in result.stderr
    assert runs_in(store) == ([], [])


@pytest.mark.slow
def test_seed_repeats_share_a_config_id(run_cli, store):
    result = run_cli("sweep", "bn_placement", *TINY, "model.bn_placement=after", "trainer.seed=0,1",
                     f"tracking.uri={store}")
    assert result.returncode == 0, result.stderr
    _, children = runs_in(store)
    assert sorted(c.info.run_name for c in children) == ["seed=0", "seed=1"]
    assert len({c.data.tags["fashion_lab.config_id"] for c in children}) == 1
    assert {c.data.tags["fashion_lab.seed"] for c in children} == {"0", "1"}


@pytest.mark.slow
def test_joblib_parallel_points_lose_nothing(run_cli, store):
    result = run_cli("train", "-m", *TINY, "model.bn_placement=before,after", "model.conv_dropout=0,0.25",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"tracking.uri={store}", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr
    parents, children = runs_in(store)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert [c.info.status for c in children] == ["FINISHED"] * 4
    assert len({c.info.run_name for c in children}) == 4
    assert {c.data.params["trainer.threads"] for c in children} == {str(sweep.job_threads(
        {"_target_": "joblib", "n_jobs": 2}))}


@pytest.mark.slow
def test_quickstart_on_real_data(run_cli, store):
    # Two epochs on 4,000 real training images keep the 6 points to a few minutes; fewer steps leave batch
    # norm's moving statistics too close to their start for a fair validation score.
    result = run_cli("sweep", "quickstart", "trainer.epochs=2", "data.train_samples=4000", "trainer.verbose=0",
                     f"tracking.uri={store}", timeout=900)
    assert result.returncode == 0, result.stderr
    parents, children = runs_in(store)
    assert len(parents) == 1 and parents[0].data.tags["fashion_lab.sweep_name"] == "quickstart"
    # 2 learning rates x 3 seeds, until sure up to 5 (sweeps/quickstart.yaml)
    assert len(children) in (6, 8, 10) and all(c.info.status == "FINISHED" for c in children)
    assert all(c.data.params["data.name"] == "fashion_mnist" for c in children)
    assert "learning rate 0.0001 (vs 0.01)" in result.stdout[result.stdout.index("Answer:"):]
    assert parents[0].data.metrics["best_val_accuracy"] > 0.5


def test_non_grid_strategy_goes_to_the_tuner(run_cli, store):
    import importlib.util

    if importlib.util.find_spec("fashion_lab.search.study") is not None:  # was fashion_lab.tune
        pytest.skip("fashion_lab.search.study exists: its own tests cover the search")
    result = run_cli("sweep", "bn_placement", "sweep.strategy=random", f"tracking.uri={store}")
    assert result.returncode != 0 and "fashion_lab.tune" in result.stderr
    assert runs_in(store) == ([], [])


def test_list_shows_seeds_epochs_images_and_expected_time(run_cli):
    """Known answers from sweep.IMAGES_PER_S (400/s): a quickstart run is 3 x (10,000 + 2,000/3) + 10,000/3
    images = 88 s, so 6 runs ~9 min and, until sure up to 5 seeds, 10 runs ~15 min."""
    result = run_cli("sweep", "--list", check=True)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert rows["quickstart"].split()[1:8] == ["grid", "6", "points", "3-5", "3", "10,000", "~9-15"]
    assert rows["ablation"].split()[1:8] == ["grid", "18", "points", "3", "5", "10,000", "~42"]
    assert "SEEDS" in result.stderr and "400 training images/s" in result.stderr  # the header says where times come from
    assert sweep.IMAGES_PER_S == 400


@pytest.mark.parametrize("name", sorted(sweep.sweep_files()))
def test_the_listing_states_the_epochs_and_images_the_sweep_composes(name):
    """--list reads sweep files without composing them (a second each): its figures must be Hydra's, through an
    experiment too (ablation_full and precision train experiment=tutorial's 25 epochs; the listing said 10)."""
    cfg = compose_sweep(name)
    listed = sweep.budget(SWEEPS_DIR / f"{name}.yaml")
    assert listed["epochs"] == cfg.trainer.epochs
    pool = cfg.data.synthetic_train if cfg.data.name.value == "synthetic" else 60000
    assert listed["train_images"] == (cfg.data.train_samples or pool - cfg.data.val_samples)


def test_the_listing_falls_back_to_the_group_files_and_the_schema(tmp_path):
    """A sweep file that states nothing: the values come from conf/ (trainer/default.yaml's 10 epochs) and the
    schema (synthetic data's 1,000 images less data/synthetic.yaml's 200 held out), as composing gives them."""
    path = tmp_path / "bare.yaml"
    path.write_text("# Bare.\ndefaults:\n  - override /data: synthetic\n"
                    "hydra:\n  sweeper:\n    params:\n      model.pooling: max,avg\n")
    cfg = compose(["data=synthetic"])
    listed = sweep.budget(path)
    train = cfg.data.synthetic_train - cfg.data.val_samples
    assert (listed["epochs"], listed["train_images"]) == (cfg.trainer.epochs, train) == (10, 800)
    per_run = (cfg.trainer.epochs * (train + cfg.data.val_samples / 3)
               + cfg.data.synthetic_test / 3) / sweep.IMAGES_PER_S
    assert listed["minutes"][0] == pytest.approx(2 * per_run / 60)


def test_planned_runs_count_points_times_seeds_until_sure_at_least_two():
    """The progress tags on a grid's parent: runs planned, and with until_sure the most it may run."""
    points = [["model.pooling=max"], ["model.pooling=avg"]]
    assert sweep.planned(compose([]), points) == {"fashion_lab.runs_planned": "2"}
    sure = compose(["sweep.until_sure=true", "sweep.seeds=3", "sweep.max_seeds=5"])
    assert sweep.planned(sure, points) == {"fashion_lab.runs_planned": "6", "fashion_lab.runs_max": "10"}
