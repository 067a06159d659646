"""The MLflow record is a contract: one run's params, tags, metrics and artifacts keep their names.

``tests/golden/run_record.json`` holds the key sets one tiny synthetic run recorded before the
redesign moved every module into its layer (commit 4f8f57e); a change to any name fails here, so a
notebook, a dashboard or a colleague's query reading the store never breaks unannounced. A deliberate
change updates the file in the same commit and says so.
"""

import json
from pathlib import Path

from conftest import compose
from mlflow import MlflowClient

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "run_record.json"
TINY = ["data=synthetic", "trainer.epochs=2", "trainer.verbose=0", "data.synthetic_train=300",
        "data.synthetic_test=100", "data.val_samples=60", "model.filters=[8,16]", "model.dense_units=32"]
# Present only where they apply: a git checkout (the commits), a SLURM job.
CONDITIONAL_TAGS = {"fashion_lab.git_commit", "mlflow.source.git.commit", "fashion_lab.workdir.git_commit",
                    "fashion_lab.slurm_job_id"}


def artifact_paths(client, run_id, path=None) -> list[str]:
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifact_paths(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def test_a_runs_record_keeps_every_name_of_the_contract(tmp_path):
    from fashion_lab.run.train import train

    store = f"sqlite:///{tmp_path / 'm.db'}"
    result = train(compose(TINY + [f"tracking.uri={store}"]))
    client = MlflowClient(store)
    run = client.get_run(result.run_id)
    recorded = {"params": sorted(run.data.params), "metrics": sorted(run.data.metrics),
                "tags": sorted(set(run.data.tags) - CONDITIONAL_TAGS),
                "artifacts": sorted(artifact_paths(client, result.run_id))}
    golden = json.loads(GOLDEN.read_text())
    for part in golden:
        assert recorded[part] == golden[part], (
            f"{part}: new {sorted(set(recorded[part]) - set(golden[part]))}, "
            f"gone {sorted(set(golden[part]) - set(recorded[part]))}")
