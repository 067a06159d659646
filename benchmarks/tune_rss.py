"""Memory across a long search: RSS of the `fashion-lab tune` process after each trial.

    python benchmarks/tune_rss.py [TRIALS] [extra overrides...]
    python benchmarks/tune_rss.py 20 tuner.fresh_process=false     # trials inside the search process

Runs a random search of TRIALS (default 20) tiny synthetic trials in a temporary folder and
prints the parent run's ``trial_rss_mb`` series (the search process's RSS, logged by the KerasTuner sweeper
after every trial) and, with fresh trial processes, the largest trial process's peak RSS.
Bounded memory: the last trials' RSS stays near the first ones'.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY_TRIAL = ["data=synthetic", "trainer.epochs=1", "data.synthetic_train=300", "data.synthetic_test=100",
              "data.val_samples=60", "trainer.verbose=0", "tracking.log_plots=false"]


def search_rss(trials: int, overrides: list[str] = (), quiet: bool = True) -> dict[str, list[float]]:
    """Run one search of ``trials`` tiny trials; its per-trial memory series, from the MLflow record."""
    with tempfile.TemporaryDirectory(prefix="tune-rss-") as folder:
        uri = f"sqlite:///{folder}/m.db"
        command = [sys.executable, "-m", "fashion_lab.cli.main", "tune", *TINY_TRIAL, f"tuner.max_trials={trials}",
                   f"tracking.uri={uri}", *overrides]
        out = subprocess.DEVNULL if quiet else None
        subprocess.run(command, cwd=folder, check=True, stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=uri)
        parent = client.search_runs([client.get_experiment_by_name("fashion-lab").experiment_id],
                                    filter_string="tags.`fashion_lab.role` = 'search'")[0]
        series = {}
        for key in ("trial_rss_mb", "trial_process_peak_rss_mb"):
            history = sorted(client.get_metric_history(parent.info.run_id, key), key=lambda m: m.step)
            series[key] = [m.value for m in history]
        return series


def main(argv: list[str]) -> int:
    trials = int(argv[0]) if argv else 20
    series = search_rss(trials, argv[1:], quiet=False)
    values, peaks = series["trial_rss_mb"], series["trial_process_peak_rss_mb"]
    for step, value in enumerate(values):
        peak = f"   largest trial process so far {peaks[step]:7.0f} MB" if peaks else ""
        print(f"trial {step:3d}  search process rss {value:7.0f} MB{peak}")
    print(f"search process: trial 2 {values[1]:.0f} MB, last {values[-1]:.0f} MB, "
          f"growth trial 2->{len(values)} {values[-1] - values[1]:+.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
