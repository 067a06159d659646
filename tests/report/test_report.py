"""fashion-lab report and the tidy reader: real sweep store (trained once per session) and constructed stores."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from conftest import SWEEP_KEYS, compose
from helpers.stores import _constructed_store

from fashion_lab.record import results
from fashion_lab.analysis import stats
from fashion_lab.report.build import build_report
from fashion_lab.report.document import Document


# --- on a real recorded 2x2 sweep with 2 seeds ---------------------------------------------

def test_report_cli_writes_tables_effects_and_plots(sweep_store, run_cli, tmp_path):
    uri, pid = sweep_store
    out = tmp_path / "rep"
    result = run_cli("report", f"tracking.uri={uri}", f"report.out={out}", timeout=180)
    assert result.returncode == 0, result.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and set(runs["sweep_id"]) == {pid} and set(runs["parent_run_id"]) == {pid}
    md = (out / "report.md").read_text()
    for key in SWEEP_KEYS:
        assert key in md
        levels = runs.groupby(key)["test_accuracy"]
        assert list(levels.size()) == [4, 4]
        for level, values in levels:
            # the CI in the report is the t interval of the 4 runs, computed independently here
            low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                               scale=values.std(ddof=1) / math.sqrt(len(values)))
            low, high = max(0.0, low), min(1.0, high)  # an accuracy's interval stays within [0, 1]
            rows = [line for line in md.splitlines() if line.startswith("| ") and " | 4 | " in line
                    and f" {Document._fmt(float(low))} |" in line and f" {Document._fmt(float(high))} |" in line]
            assert len(rows) == 1, (level, low, high)
    assert "Interaction" in md and "n=2" in md  # 2-factor sweep: interaction table with 2 seeds per cell
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # curves, metric vs param, parallel coords, confusion
    assert "<img" in html and "src=\"plots/" not in html  # self-contained
    assert "fashion-lab reproduce " in md and "Failed or interrupted runs" in md


def test_results_frame_is_typed_and_picks_latest_sweep(sweep_store):
    uri, pid = sweep_store
    frame = results.runs_frame(uri, progress=None)  # default: the latest sweep
    assert len(frame) == 8 and (frame["sweep_id"] == pid).all()
    assert frame["model.conv_dropout"].dtype.kind == "f" and frame["trainer.epochs"].dtype.kind == "i"
    assert set(frame["seed"]) == {0, 1} and (frame["role"] == "point").all()
    assert (frame["duration_s"] > 0).all() and frame["test_accuracy"].between(0, 1).all()
    history = results.history_frame(uri, frame["run_id"], progress=None)
    assert set(history["metric"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history) == 8 * 4 and (history["epoch"] == 0).all()  # 1 epoch each


def test_unknown_sweep_fails_with_the_known_names(sweep_store, run_cli):
    uri, _ = sweep_store
    result = run_cli("report", f"tracking.uri={uri}", "report.sweep=nope", timeout=120)
    assert result.returncode == 2
    assert "'nope' not found" in result.stderr and "tiny_grid" in result.stderr


# --- constructed stores: known metric values, no training ---------------------------------

def test_sentences_state_no_difference_and_a_clear_gap(store, tmp_path):
    noise = [0.000, 0.004, -0.004]
    points = []
    for seed, e in enumerate(noise):
        for bn in ("after", "before"):         # identical effect: same values at both levels
            for drop, gap in ((0.0, 0.0), (0.25, -0.05)):  # dropout 0.25 costs exactly 5 points
                points.append({"model.bn_placement": bn, "model.conv_dropout": drop, "trainer.seed": seed,
                               "seed": seed, "acc": 0.85 + gap + e})
    _constructed_store(store, points, ["model.bn_placement", "model.conv_dropout"],
                       failed="TrainingDiverged: loss became nan at epoch 2")
    folder = build_report(store, tmp_path / "rep", progress=None)
    md = (folder / "report.md").read_text()
    assert "bn placement before (vs after): undecided on test accuracy: +0.0 pt, 95 % CI" in md  # issue 19: "undecided", was "no detectable difference"
    gap = re.search(r"conv dropout 0.25 \(vs 0.0\) changed test accuracy by (\S+) pt "
                    r"\(95 % CI (\S+) to (\S+) pt, 6 matched pairs\)", md)
    assert gap, md
    diff, low, high = (float(x.replace("\u2212", "-")) for x in gap.groups())
    # matched pairs: the seed noise cancels, so the exact 5-point cost comes with a (near) exact interval
    assert diff == -5.0 and low <= -5.0 <= high < 0
    assert "TrainingDiverged: loss became nan" in md and "| broken | FAILED |" in md
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 13


def test_one_seed_per_level_gives_no_confidence(store, tmp_path):
    points = [{"optimizer.name": name, "trainer.seed": 0, "seed": 0, "acc": acc}
              for name, acc in (("sgd", 0.80), ("adam", 0.90))]
    _constructed_store(store, points, ["optimizer"])  # a group choice: its column is optimizer.name
    md = (build_report(store, tmp_path / "rep", progress=None) / "report.md").read_text()
    assert "optimizer adam (vs sgd) changed test accuracy by +10.0 pt, but no confidence can be given" in md


def test_welch_interval_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.8, 0.01, 5), rng.normal(0.82, 0.03, 4)
    d = stats.welch_difference(b, a)
    ci = scipy_stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert d.diff == pytest.approx(b.mean() - a.mean())
    assert (d.low, d.high) == pytest.approx((ci.low, ci.high))


def test_report_without_sweeps_reads_plain_runs(store, tmp_path):
    from fashion_lab.record import tracking

    cfg = compose([f"tracking.uri={store}"])
    client = tracking.client_for(cfg.tracking)
    exp = tracking.ensure_experiment(client, cfg.tracking)
    for lr, acc in ((0.01, 0.8), (0.1, 0.7)):
        run = client.create_run(exp, run_name=f"lr {lr}")
        tracking.log_params(client, run.info.run_id, {"optimizer.learning_rate": lr, "trainer.seed": 0})
        tracking.log_metrics(client, run.info.run_id, {"test_accuracy": acc, "best_val_accuracy": acc})
        client.set_terminated(run.info.run_id, "FINISHED")
    folder = build_report(store, tmp_path / "rep", progress=None)
    md = (folder / "report.md").read_text()
    assert "No sweep or search" in md and "learning rate 0.1 (vs 0.01)" in md


def test_latest_sweep_by_default_and_selection_by_name_or_id(store):
    first = _constructed_store(store, [{"model.dense_units": u, "seed": 0, "acc": 0.8} for u in (128, 512)],
                               ["model.dense_units"], name="older")
    second = _constructed_store(store, [{"model.dense_units": 64, "seed": 0, "acc": 0.7}], ["model.dense_units"],
                                name="newer", role="search")
    assert set(results.runs_frame(store, progress=None)["sweep_id"]) == {second}  # searches count as sweeps
    by_name = results.runs_frame(store, sweep="older", progress=None)
    assert len(by_name) == 2 and set(by_name["sweep_id"]) == {first}
    assert by_name["model.dense_units"].tolist() == [128, 512]
    assert len(results.runs_frame(store, sweep=first, progress=None)) == 2
    assert len(results.runs_frame(store, all_runs=True, progress=None)) == 5  # 3 children + 2 parents


def test_search_factors_are_confounded_and_close_values_stay_distinct(store, tmp_path):
    points = [{"optimizer.learning_rate": lr, "model.dense_units": units, "seed": 0, "acc": acc}
              for lr, units, acc in ((0.000154, 64, 0.84), (0.000238, 128, 0.86), (0.01, 64, 0.88),
                                     (0.000154, 128, 0.85))]
    _constructed_store(store, points, ["optimizer.learning_rate", "model.dense_units"], role="search",
                       strategy="random")
    folder = build_report(store, tmp_path / "rep", progress=None)
    effects = pd.read_csv(folder / "effects.csv")
    assert len(effects) == 2 * 3 and set(effects["verdict"]) == {"confounded"} and effects["diff"].isna().all()
    md = (folder / "report.md").read_text()
    assert "learning rate: confounded, no estimate: the levels were chosen by a random search" in md
    assert "| 0.000154 |" in md and "| 0.000238 |" in md  # not both "0.0002"
    assert "A search estimates no effects" in md
