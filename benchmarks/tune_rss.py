"""Memory across a long search: RSS after each trial of one `fashion-lab tune` process.

    python benchmarks/tune_rss.py [TRIALS] [extra overrides...]

Runs a random search of TRIALS (default 20) tiny synthetic trials in a temporary folder and
prints the parent run's ``trial_rss_mb`` series (logged by tune.py after every trial, with
the Keras session cleared between trials). Bounded memory: the last trials' RSS stays near
the first ones', instead of growing by a model's worth per trial.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    trials = int(argv[0]) if argv else 20
    with tempfile.TemporaryDirectory(prefix="tune-rss-") as folder:
        uri = f"sqlite:///{folder}/m.db"
        command = [sys.executable, "-m", "fashion_lab.cli", "tune", "data=synthetic", "trainer.epochs=1",
                   "data.synthetic_train=300", "data.synthetic_test=100", "data.val_samples=60",
                   "trainer.verbose=0", "tracking.log_plots=false", f"tuner.max_trials={trials}",
                   f"tracking.uri={uri}", *argv[1:]]
        subprocess.run(command, cwd=folder, check=True, env={**__import__("os").environ,
                                                             "PYTHONPATH": str(REPO)})
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=uri)
        parent = client.search_runs([client.get_experiment_by_name("fashion-lab").experiment_id],
                                    filter_string="tags.`fashion_lab.role` = 'search'")[0]
        series = sorted(client.get_metric_history(parent.info.run_id, "trial_rss_mb"), key=lambda m: m.step)
        for m in series:
            print(f"trial {m.step:3d}  rss {m.value:7.0f} MB")
        values = [m.value for m in series]
        print(f"first {values[0]:.0f} MB, last {values[-1]:.0f} MB, max {max(values):.0f} MB, "
              f"growth over the last half {values[-1] - values[len(values) // 2]:+.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
