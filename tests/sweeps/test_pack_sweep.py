"""`fashion-lab sweep NAME sweep.pack=K`: a grid's seeds trained K at a time as towers of one model, one
recorded run per seed under the sweep's parent; what a pack cannot do is refused in one line, exit 2."""

import pytest
from mlflow import MlflowClient

TINY = ["data=synthetic", "trainer.epochs=1", "trainer.verbose=0", "data.synthetic_train=300",
        "data.synthetic_test=100", "data.val_samples=60", "model.filters=[8,16]", "model.dense_units=32"]


@pytest.mark.parametrize("args, says", [
    (["sweep", "bn_placement", "sweep.pack=0"], "sweep.pack=0: give an integer >= 1"),
    (["sweep", "bn_placement", "sweep.pack=2", "sweep.until_sure=true"], "with sweep.until_sure=true is not supported"),
    (["sweep", "bn_placement", "sweep.pack=2", "sweep.race=true"], "with sweep.race=true is not supported"),
    (["sweep", "bn_placement", "sweep.pack=2", "sweep.seeds=2", "trainer.early_stopping_patience=1"],
     "trainer.early_stopping_patience=1 is not supported"),
    (["train", "-m", "model.bn_placement=after", "trainer.seed=0,1", "sweep.pack=2"],
     "sweep.pack=2 is applied by `fashion-lab sweep NAME`"),
])
def test_a_pack_that_cannot_apply_is_refused_in_one_line(cli_in_process, tmp_path, args, says):
    result = cli_in_process(*args, *TINY, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert not (tmp_path / "m.db").exists() or not _runs(f"sqlite:///{tmp_path / 'm.db'}")


def _runs(store):
    client = MlflowClient(store)
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


@pytest.mark.slow
def test_a_packed_sweep_records_one_run_per_seed_and_resumes(run_cli, tmp_path):
    store = f"sqlite:///{tmp_path / 'm.db'}"
    command = ["sweep", "bn_placement", "model.bn_placement=after", "sweep.seeds=3", "sweep.pack=2", *TINY,
               f"tracking.uri={store}"]
    run_cli(*command, check=True, timeout=600)
    children = [r for r in _runs(store) if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["trainer.seed"] for r in children) == ["0", "1", "2"]
    assert sorted(r.data.tags["fashion_lab.packed_with"] for r in children) == ["0,1", "0,1", "2"]
    assert {r.info.status for r in children} == {"FINISHED"}
    assert sorted(r.info.run_name for r in children) == ["seed=0", "seed=1", "seed=2"]
    again = run_cli(*command, check=True, timeout=600)  # the same command resumes: every seed is done
    assert again.stdout.count("already recorded") == 3
    assert len([r for r in _runs(store) if "mlflow.parentRunId" in r.data.tags]) == 3


def test_the_seed_dimension_is_cut_into_packs_and_each_pack_back_into_its_seeds():
    from fashion_lab.config import sweep_files
    from fashion_lab.sweeps.grid import with_seeds
    from fashion_lab.sweeps.pack import per_seed, with_packs

    files = sweep_files()
    three = with_packs(files["bn_placement"], with_seeds(files["bn_placement"], ["sweep.seeds=3", "sweep.pack=2"]))
    assert three[-2:] == ["trainer.seed=0", "sweep.pack_seeds=choice([0,1],[2])"]
    # a sweep file's own seed dimension (ablation: trainer.seed: 0,1,2) is packed the same way
    assert with_packs(files["ablation"], ["sweep.pack=4"])[-1] == "sweep.pack_seeds=choice([0,1,2])"
    assert with_packs(files["ablation"], ["sweep.pack=1"]) == ["sweep.pack=1"]
    job = ["model.bn_placement=after", "trainer.seed=0", "sweep.pack_seeds=[4,5]"]
    assert per_seed(job) == [["model.bn_placement=after", "trainer.seed=4"], ["model.bn_placement=after", "trainer.seed=5"]]
