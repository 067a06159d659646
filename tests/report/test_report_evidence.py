"""The report's "What the answer rests on": paired differences with their intervals (figure), Holm's
correction stated, which epoch each figure is, and the batch-norm warm-up caveat, on constructed stores."""

from __future__ import annotations

from conftest import compose
from helpers.stores import _constructed_store

from fashion_lab.report.build import build_report


def _with_histories(store: str, gap: float, epochs: int = 3) -> None:
    """Every finished point gets per-epoch accuracy/val_accuracy: epoch 1 validation ``gap`` below training."""
    from fashion_lab.record import results, tracking

    client = tracking.client_for(compose([f"tracking.uri={store}"]).tracking)
    for run_id in results.runs_frame(store, progress=None).query("status == 'FINISHED'")["run_id"]:
        for step in range(epochs):
            train = 0.79 + 0.03 * step
            tracking.log_metrics(client, run_id, {"accuracy": train, "val_accuracy": train - (gap if step == 0
                                                                                                 else 0.01)}, step=step)
        tracking.log_metrics(client, run_id, {"epochs_completed": epochs})


def _grid(factors: int) -> list[dict]:
    points = []
    for seed, noise in enumerate([0.000, 0.004, -0.004]):
        for bn in ("after", "before"):
            for drop, gap in ((0.0, 0.0), (0.25, -0.05))[:factors]:
                point = {"model.bn_placement": bn, "trainer.seed": seed, "seed": seed, "acc": 0.85 + gap + noise
                         + (0.002 * seed if bn == "before" else 0)}
                if factors == 2:
                    point["model.conv_dropout"] = drop
                points.append(point)
    return points


def test_report_shows_the_paired_differences_holm_the_epochs_and_the_bn_caveat(store, tmp_path):
    _constructed_store(store, _grid(2), ["model.bn_placement", "model.conv_dropout"])
    _with_histories(store, gap=0.5)           # the quickstart's Adam: 0.79 training vs ~0.3 validation at epoch 1
    folder = build_report(store, tmp_path / "rep", progress=None)
    md = (folder / "report.md").read_text()
    assert "## What the answer rests on" in md and "Figure plots/paired_differences.png" in md
    assert (folder / "plots" / "paired_differences.png").stat().st_size > 1000
    assert "Multiple comparisons: 2 comparisons on test accuracy; Holm's correction" in md
    assert "| Holm p |" in md or "Holm p" in md
    assert "Which epoch: validation accuracy (best_val_accuracy) is the best epoch's" in md
    assert "last epoch's weights (no early stopping)" in md
    assert "Caveat (batch norm warm-up): in 12 of 12 runs with batch norm" in md


def test_one_comparison_says_no_correction_and_settled_runs_get_no_caveat(store, tmp_path):
    _constructed_store(store, _grid(1), ["model.bn_placement"])
    _with_histories(store, gap=0.02)
    md = (build_report(store, tmp_path / "rep", progress=None) / "report.md").read_text()
    assert "one comparison with an interval, so no correction is needed" in md
    assert "batch norm warm-up" not in md
