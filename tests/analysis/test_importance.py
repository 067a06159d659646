"""Parameter importance (exploratory) on constructed runs with a known answer: one key drives the objective."""

import numpy as np
import pandas as pd
import pytest
from conftest import compose

from fashion_lab.analysis.importance import applies, parameter_importance

KEYS = ["optimizer.learning_rate", "model.bn_placement", "model.dense_dropout", "model.filters"]


def known_runs(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """A random search's runs where only the learning rate matters (best at 0.01), plus tiny noise."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -1, n)
    return pd.DataFrame({
        "optimizer.learning_rate": lr,
        "model.bn_placement": rng.choice(["after", "before", "none"], n),
        "model.dense_dropout": rng.uniform(0, 0.6, n),
        "model.filters": rng.choice(["[16, 32]", "[32, 64]", "[64, 128]"], n),
        "best_val_accuracy": 0.9 - 0.1 * np.abs(np.log10(lr) + 2) + rng.normal(0, 0.002, n),
        "test_accuracy": rng.uniform(0.8, 0.9, n),
    })


def test_the_key_that_drives_the_objective_ranks_first_by_far():
    found = parameter_importance(known_runs(), KEYS, "best_val_accuracy")
    assert found.table["key"].iloc[0] == "optimizer.learning_rate"
    lr, *others = found.table["importance"]
    assert lr > 0.5 and all(lr > 10 * max(o, 0.01) for o in others)
    assert found.r2 > 0.7 and found.runs == 40


def test_a_key_that_explains_nothing_explains_nothing():
    found = parameter_importance(known_runs(), KEYS, "test_accuracy")  # pure noise
    assert found.r2 < 0.2 and found.table["importance"].max() < 0.5


def test_conditional_keys_with_missing_values_are_handled():
    runs = known_runs()
    runs["optimizer.momentum"] = np.where(runs["model.bn_placement"] == "none", np.nan, 0.9)
    found = parameter_importance(runs, KEYS + ["optimizer.momentum"], "best_val_accuracy")
    assert found.table["key"].iloc[0] == "optimizer.learning_rate"


def test_too_few_runs_give_no_ranking():
    assert parameter_importance(known_runs(5), KEYS, "best_val_accuracy") is None


@pytest.mark.parametrize("strategy,n_keys,expected", [
    ("grid", 2, False), ("grid", 3, False), ("grid", 4, True), ("random", 2, True), ("bayesian", 1, False),
    (None, 4, True)])
def test_which_reports_get_it(strategy, n_keys, expected):
    assert applies(strategy, KEYS[:n_keys]) is expected


def test_search_report_has_the_labelled_section_and_plot(store, tmp_path):
    """A recorded random search (constructed metrics, real store): its report ranks the driving key."""
    from fashion_lab.record import tracking
    from fashion_lab.report.build import build_report

    cfg = compose([f"tracking.uri={store}"])
    client = tracking.client_for(cfg.tracking)
    exp = tracking.ensure_experiment(client, cfg.tracking)
    pid = tracking.open_parent_run(cfg.tracking, name="known", role="search", strategy="random",
                                   sweep_name="known", swept_keys=KEYS, definition="")
    for i, row in known_runs(24).iterrows():
        run = client.create_run(exp, run_name=f"trial {i}", tags={
            **tracking.child_tags(pid, "known", "trial", "random"), "fashion_lab.trial_id": str(i)})
        tracking.log_params(client, run.info.run_id, {k: row[k] for k in KEYS})
        tracking.log_metrics(client, run.info.run_id, {m: row[m] for m in ("best_val_accuracy", "test_accuracy")})
        client.set_terminated(run.info.run_id, "FINISHED")
    client.set_terminated(pid, "FINISHED")

    folder = build_report(store, tmp_path / "rep", progress=None)
    md = (folder / "report.md").read_text()
    section = md.split("Parameter importance (exploratory)", 1)[1]
    assert "exploratory" in section and "Most important: optimizer.learning_rate" in section
    assert (folder / "plots" / "parameter_importance.png").stat().st_size > 1000
