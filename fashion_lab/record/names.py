"""The names fashion-lab writes into the store: the tag prefix, the tags MLflow's UI reads, and the
artifact and model names a run logs. Each is defined here once; the other record modules import them."""

TAG = "fashion_lab."  # prefix of every tag fashion-lab writes
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # opens the UI's training view
SHARED_VIEW = "mlflow.sharedViewState."  # the UI's "share view" tags: #/experiments/ID/runs?viewStateShareKey=KEY
REAPED = "ended without closing the run"  # how the failure tag of a run closed for its dead process ends
WEIGHTS_FILE = "model.weights.h5"  # the weights artifact every run logs (tracking.log_weights)
MODEL_NAME = "model"  # the logged model's name in the run (the UI's Models tab)
