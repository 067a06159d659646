"""Hydra's own conventions hold for fashion-lab's commands and sweepers (issue 19 item 2, in part).

Checked as Hydra's plugin suites check them (hydra.test_utils.launcher_common_tests): job folder
names from ``hydra.job.override_dirname``, and ``hydra.sweeper.max_batch_size`` honoured or refused.
"""

from __future__ import annotations

from pathlib import Path

TINY = ["data=synthetic", "trainer.epochs=1", "data.synthetic_train=300", "data.synthetic_test=100",
        "data.val_samples=60", "trainer.verbose=0"]
PLUMBING = ("sweep.parent_run_id", "sweep.swept_keys", "sweep.trial")


def test_job_folder_names_show_the_swept_keys_not_fashion_labs_plumbing(run_cli, store, tmp_path):
    result = run_cli("train", "-m", *TINY, "trainer.seed=0,1", "hydra.sweep.subdir=${hydra.job.override_dirname}",
                     f"tracking.uri={store}", check=True)
    names = [str(p.relative_to(tmp_path / "outputs")) for p in (tmp_path / "outputs").rglob("*") if p.is_dir()]
    assert any("trainer.seed=0" in n for n in names) and any("trainer.seed=1" in n for n in names), names
    assert not any(key in n for n in names for key in PLUMBING), names
    assert "Answer" in result.stdout or "seed" in result.stdout


def test_until_sure_launches_at_most_max_batch_size_jobs_at_a_time(run_cli, store, tmp_path):
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "pair.yaml").write_text("hydra:\n  sweeper:\n    params:\n      model.dense_units: 8,16\n"
                                      "sweep:\n  seeds: 2\n  max_seeds: 2\n")
    result = run_cli("sweep", "pair", "sweep.until_sure=true", "hydra.sweeper.max_batch_size=2", *TINY,
                     f"tracking.uri={store}", env={"FASHION_LAB_SWEEPS_DIR": str(sweeps)}, check=True)
    output = result.stdout + result.stderr
    assert output.count("Launching 2 jobs locally") == 2, output[-3000:]  # 4 first-round jobs, 2 at a time
    assert "Launching 4 jobs locally" not in output


def test_the_kerastuner_sweeper_refuses_max_batch_size_in_one_line(run_cli, tmp_path):
    result = run_cli("tune", *TINY, "tuner.max_trials=1", "hydra.sweeper.max_batch_size=2",
                     f"tracking.uri=sqlite:///{tmp_path / 'm.db'}")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "hydra.sweeper.max_batch_size=2" in lines[0] and "tuner.parallel_trials" in lines[0]
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "outputs").exists()


def pair_sweep(tmp_path, params: str, seeds: str = "  seeds: 2\n") -> dict:
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir(exist_ok=True)
    (sweeps / "pair.yaml").write_text(f"hydra:\n  sweeper:\n    params:\n      {params}\n"
                                      f"sweep:\n{seeds}  max_seeds: 2\n")
    return {"FASHION_LAB_SWEEPS_DIR": str(sweeps)}


def child_params(store, key):
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("fashion-lab").experiment_id
    runs = client.search_runs([experiment], "tags.`fashion_lab.role` = 'point'")
    return sorted(int(r.data.params[key]) for r in runs)


def test_until_sure_runs_the_swept_seeds_and_writes_multirun_yaml(run_cli, store, tmp_path):
    """A swept trainer.seed=5,6 is the first round's seeds (not 0 and 1); multirun.yaml as the basic sweeper writes."""
    run_cli("sweep", "pair", "sweep.until_sure=true", "trainer.seed=5,6", *TINY, f"tracking.uri={store}",
            env=pair_sweep(tmp_path, "model.dense_units: 8,16", seeds=""), check=True)
    assert child_params(store, "trainer.seed") == [5, 5, 6, 6]
    (saved,) = (tmp_path / "outputs" / "multirun").rglob("multirun.yaml")
    assert "until_sure" in saved.read_text()


def test_until_sure_counts_failed_points_and_runs_apart(run_cli, store, tmp_path):
    """One point of two diverges on both its seeds: 1 of 2 points failed, 2 of 4 runs (not '2 of 2 points')."""
    result = run_cli("sweep", "pair", "sweep.until_sure=true", *TINY, f"tracking.uri={store}",
                     env=pair_sweep(tmp_path, "optimizer.learning_rate: 0.01,1e30"))
    assert result.returncode != 0
    assert "1 of 2 points failed (2 of 4 runs)" in result.stderr, result.stderr[-2000:]
