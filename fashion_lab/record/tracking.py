"""The record layer's face: every name it offers, from the modules that each do one job.

``from fashion_lab.record import tracking; tracking.X`` and ``from fashion_lab.record.tracking import X``
keep working for every name below. Only modules of ``fashion_lab/record/`` import mlflow, and only
inside their functions: importing this never imports MLflow, Keras or TensorFlow (the report reads
through it).

- ``names``: the tag prefix and every tag, artifact and model name fashion-lab writes.
- ``client``: the MLflow client of a tracking config, experiments, runs by id, tags, short timeouts.
- ``owners``: provenance (commits, versions, user, host, process) and reaping runs whose process died.
- ``run``: one run per ``train()`` (``tracked_run``, the ``Recorder``) and the log calls.
- ``upload``: a record kept on disk while the server was away, put into its store.
- ``lease``: one command owns a sweep at a time (a lease tag on its parent, a heartbeat, stale takeover).
- ``writes``: tags, metrics and artifact downloads for the layers above, given a tracking config.
- ``parents``: the parent run of a sweep or search (open, find, resume, close) and its children's tags.
- ``queries``: filters and searches over the store, a sweep's children, the UI link of its view.
- ``run_record``: ``RunRecord``, a run as plain data: what every layer above record reads of a run.
- ``models``: the Keras model as an MLflow model, the registry, a run's weights downloaded again.
- ``fashion_lab.runtime.signals``: Ctrl-C and SIGTERM unwind as interrupted, and are remembered.

A test that patches a module-level value (``PACKAGE_DIR``, ``_SIGNALLED``) patches it in the module
that reads it: assigning it here changes nothing.
"""

from __future__ import annotations

from fashion_lab.record.client import (NotInStore, _default_artifact_location, client, client_for,
                                       ensure_experiment, experiment_ids, get_run, set_tags, short_timeouts,
                                       tag_default_experiment)
from fashion_lab.record.models import (_keras_signature, download_model_files, download_weights,
                                       log_keras_model, logged_model_uri, register_model, registered_version)
from fashion_lab.record.names import EXPERIMENT_KIND, MODEL_NAME, REAPED, SHARED_VIEW, TAG, WEIGHTS_FILE
from fashion_lab.record.owners import (PACKAGE_DIR, PACKAGES, owner_alive, _checkout, _git, close_dead_runs,
                                       commit_tags, git_commit, package_versions, process_id, provenance_tags,
                                       reap, reap_orphans, system_tags, where_tags, workdir_commit)
from fashion_lab.record.lease import GRACE_S, HEARTBEAT_S, Busy, Lease, check_free, claim, decide, release
from fashion_lab.record.parents import (child_tags, close_parent_run, find_parent, hold_parent, open_parent_run,
                                        resume_parent, sweep_view)
from fashion_lab.record.queries import (PAGE, _progress, children, min_metric, read_run, role_filter, round_run,
                                        search_all, sweep_filter, sweep_view_url)
from fashion_lab.record.run_record import RunRecord, run_record
from fashion_lab.record.run import (SENDERS, Recorder, TrainingDiverged, dataset_entity, failure_line, failure_reason,
                                    log_dataset, log_datasets, log_metrics, log_params, send, terminate,
                                    tracked_run)
from fashion_lab.record.store_faults import StoreUnwritable
from fashion_lab.record.upload import Uploaded, upload_record
from fashion_lab.record.writes import download_artifact, log_run_metrics, tag_run
from fashion_lab.runtime.signals import (_SIGNALLED, Terminated, install_signal_handlers, raise_interrupted,
                                         raise_terminated, sigterm_raises, take_signal)

__all__ = [
    # names
    "EXPERIMENT_KIND", "MODEL_NAME", "REAPED", "SHARED_VIEW", "TAG", "WEIGHTS_FILE",
    # client
    "NotInStore", "client", "client_for", "ensure_experiment", "experiment_ids", "get_run", "set_tags",
    "short_timeouts", "tag_default_experiment",
    # owners
    "PACKAGE_DIR", "PACKAGES", "close_dead_runs", "commit_tags", "git_commit", "package_versions", "process_id",
    "provenance_tags", "reap", "reap_orphans", "system_tags", "where_tags", "workdir_commit",
    # run
    "SENDERS", "Recorder", "TrainingDiverged", "dataset_entity", "failure_line", "failure_reason", "log_dataset", "log_datasets",
    "log_metrics", "log_params", "send", "terminate", "tracked_run",
    # store_faults
    "StoreUnwritable",
    # upload
    "Uploaded", "upload_record",
    # writes
    "download_artifact", "log_run_metrics", "tag_run",
    # parents
    "child_tags", "close_parent_run", "find_parent", "hold_parent", "open_parent_run", "resume_parent", "sweep_view",
    # lease
    "Busy", "GRACE_S", "HEARTBEAT_S", "Lease", "check_free", "claim", "decide", "release",
    # queries
    "PAGE", "children", "min_metric", "read_run", "role_filter", "round_run", "search_all", "sweep_filter", "sweep_view_url",
    # run_record
    "RunRecord", "run_record",
    # models
    "download_model_files", "download_weights", "log_keras_model", "logged_model_uri", "register_model",
    "registered_version",
    # signals (fashion_lab.runtime.signals)
    "Terminated", "install_signal_handlers", "raise_interrupted", "raise_terminated", "sigterm_raises",
    "take_signal",
    # private, for tests and the modules that read them through the face
    "_SIGNALLED", "owner_alive", "_checkout", "_default_artifact_location", "_git", "_keras_signature", "_progress",
]
