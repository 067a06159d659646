"""Hydra's own conventions hold for fashion-lab's commands and sweepers (issue 19 item 2, in part).

Checked as Hydra's plugin suites check them (hydra.test_utils.launcher_common_tests): job folder
names from ``hydra.job.override_dirname``, and ``hydra.sweeper.max_batch_size`` honoured or refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.slow  # four tiny runs (~40 s); still in CI
def test_until_sure_runs_the_swept_seeds_and_writes_multirun_yaml(run_cli, store, tmp_path):
    """A swept trainer.seed=5,6 is the first round's seeds (not 0 and 1); multirun.yaml as the basic sweeper writes."""
    run_cli("sweep", "pair", "sweep.until_sure=true", "trainer.seed=5,6", *TINY, f"tracking.uri={store}",
            env=pair_sweep(tmp_path, "model.dense_units: 8,16", seeds=""), check=True)
    assert child_params(store, "trainer.seed") == [5, 5, 6, 6]
    (saved,) = (tmp_path / "outputs" / "multirun").rglob("multirun.yaml")
    assert "until_sure" in saved.read_text()


@pytest.mark.slow  # four tiny runs (~40 s); still in CI
def test_until_sure_counts_failed_points_and_runs_apart(run_cli, store, tmp_path):
    """One point of two diverges on both its seeds: 1 of 2 points failed, 2 of 4 runs (not '2 of 2 points')."""
    result = run_cli("sweep", "pair", "sweep.until_sure=true", *TINY, f"tracking.uri={store}",
                     env=pair_sweep(tmp_path, "optimizer.learning_rate: 0.01,1e30"))
    assert result.returncode != 0
    assert "1 of 2 points failed (2 of 4 runs)" in result.stderr, result.stderr[-2000:]


# --- a closed set's typo: one line with the allowed values and the closest, before Hydra composes ---

@pytest.mark.parametrize("override,hint", [
    ("optimizer=adma", "did you mean optimizer=adam?"),
    ("data=smal", "did you mean data=small?"),
    ("model.bn_placement=befor", "did you mean model.bn_placement=before?"),
    ("trainer.deterministic=maybe", "not a valid bool (true or false)"),
    ("model.pooling=max,avgg", "did you mean model.pooling=avg?"),
])
def test_a_value_outside_its_closed_set_is_refused_with_the_closest(override, hint):
    from fashion_lab.config import ConfigError, check_overrides

    with pytest.raises(ConfigError, match="is not allowed") as error:
        check_overrides([override])
    assert hint in str(error.value) and "\n" not in str(error.value)


def test_allowed_values_pass_the_check():
    from fashion_lab.config import check_overrides

    check_overrides(["optimizer=sgd,adam", "trainer.deterministic=True", "model.pooling=choice(max,avg)",
                     "data=synthetic", "model.bn_placement=null", "sweep=quickstart"])


def test_the_command_line_gets_one_line_for_a_typo_and_exit_2(run_cli, tmp_path):
    result = run_cli("train", "optimizer=adma", f"tracking.uri=sqlite:///{tmp_path / 'm.db'}")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "fashion-lab: error: optimizer=adma is not allowed: one of adam, adamw, rmsprop, sgd; "
        "did you mean optimizer=adam?"]
    assert not (tmp_path / "m.db").exists()


# --- Hydra's own flags on every command ------------------------------------------------------

def test_hydra_flags_work_on_tune_and_sweep_and_run_nothing(run_cli, tmp_path):
    store = f"tracking.uri=sqlite:///{tmp_path / 'm.db'}"
    shown = run_cli("tune", "--cfg", "job", "tuner.max_trials=1", store, check=True).stdout
    assert "max_trials: 1" in shown and "kerastuner" not in shown  # the job's config, without hydra's
    plugins = run_cli("tune", "--info", "plugins", store, check=True).stdout
    assert "KerasTunerSweeper" in plugins and "UntilSureSweeper" in plugins
    grid = run_cli("sweep", "quickstart", "--cfg", "job", store, check=True).stdout
    assert "name: quickstart" in grid and "learning_rate:" in grid
    assert not (tmp_path / "m.db").exists() and not (tmp_path / "outputs").exists()


# --- hydra.job.chdir=true: each job in its own folder, the store still the command's -------------

def runs_by_role(db: Path) -> dict:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("fashion-lab").experiment_id
    found: dict = {}
    for run in client.search_runs([experiment]):
        found.setdefault(run.data.tags.get("fashion_lab.role"), []).append(run.info.status)
    return found


@pytest.mark.slow  # two tiny trials (~30 s)
def test_a_search_with_hydra_job_chdir_records_every_trial_in_the_commands_store(run_cli, tmp_path):
    result = run_cli("tune", *TINY, "tuner.max_trials=2", "tuner.fresh_process=false", "hydra.job.chdir=true",
                     "tracking.uri=sqlite:///m.db", check=True, timeout=600)
    assert runs_by_role(tmp_path / "m.db") == {"search": ["FINISHED"], "trial": ["FINISHED", "FINISHED"]}
    assert "registered model" in result.stdout
    assert not list((tmp_path / "outputs").rglob("m.db"))  # no second store inside a job folder


@pytest.mark.slow  # four tiny runs on two joblib workers (~1 min)
def test_until_sure_on_joblib_with_hydra_job_chdir_finishes_every_point(run_cli, tmp_path):
    run_cli("sweep", "pair", "sweep.until_sure=true", *TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
            "hydra.job.chdir=true", "tracking.uri=sqlite:///m.db", "data.dir=null",
            env=pair_sweep(tmp_path, "model.dense_units: 8,16"), check=True, timeout=600)
    assert runs_by_role(tmp_path / "m.db") == {"sweep": ["FINISHED"], "point": ["FINISHED"] * 4}


# --- another Hydra app in the same environment -------------------------------------------------

FOREIGN_APP = '''
import hydra


@hydra.main(config_path=None, config_name=None, version_base="1.3")
def main(cfg):
    print("foreign job ran")


if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("sweeper", ["kerastuner", "until_sure"])
def test_a_foreign_hydra_app_sees_both_sweepers_and_gets_one_line_from_each(sweeper, tmp_path):
    import subprocess
    import sys

    from conftest import cli_env

    app = tmp_path / "app.py"
    app.write_text(FOREIGN_APP)
    python = Path(sys.executable)
    plugins = subprocess.run([python, app, "--info", "plugins"], cwd=tmp_path, capture_output=True, text=True,
                             env=cli_env(), timeout=120).stdout
    assert "KerasTunerSweeper" in plugins and "UntilSureSweeper" in plugins
    result = subprocess.run([python, app, "-m", f"hydra/sweeper={sweeper}"], cwd=tmp_path, capture_output=True,
                            text=True, env=cli_env(), timeout=120)
    assert result.returncode == 1 and "foreign job ran" not in result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip() and "HYDRA_FULL_ERROR" not in line]
    assert lines == [f"hydra/sweeper={sweeper}: the {sweeper} sweeper runs fashion-lab's train task only "
                     + ("(fashion-lab tune)" if sweeper == "kerastuner" else "(fashion-lab sweep NAME sweep.until_sure=true)")
                     + "; this app's config has no sweep, tuner and trainer"], result.stderr
