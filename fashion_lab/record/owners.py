"""Who a run belongs to and whether it is still alive.

Provenance: fashion-lab's own commit and the working folder's, the packages' versions, the user
(MLflow's system tags), the host, the SLURM job and the owning process (pid plus start time).
Liveness: a RUNNING run whose owning process on this host is gone (SIGKILL) is closed KILLED.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Optional

from fashion_lab.record.client import client, client_for, ensure_experiment
from fashion_lab.record.names import REAPED, TAG
from fashion_lab.runtime.processes import START, STATE, proc_stat

PACKAGES = ("fashion-lab", "tensorflow", "keras", "keras-tuner", "mlflow", "hydra-core", "numpy")


def process_id() -> str:
    """pid plus the process start time, so a reused pid is never mistaken for a live run's owner."""
    pid = os.getpid()
    fields = proc_stat(pid)
    return f"{pid}:{fields[START] if fields else '0'}"


def owner_alive(owner: str) -> bool:
    pid, _, start = owner.partition(":")
    fields = proc_stat(pid)
    if fields is None:  # no such process, or no /proc: ask the kernel
        try:
            os.kill(int(pid), 0)
            return True
        except (OSError, ValueError):
            return False
    if fields[STATE] in ("Z", "X"):  # a zombie: exited, not yet reaped by its (possibly dead) parent
        return False
    return start in ("", "0") or fields[START] == start


PACKAGE_DIR = Path(__file__).resolve().parent


def _git(folder: Path, *args: str) -> Optional[str]:
    """``git -C folder ARGS``'s output, None where git or the repository is missing."""
    try:
        out = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=None)  # the code a process runs is the code it imported at its start
def _checkout() -> Optional[tuple[str, str]]:
    """(top folder, HEAD) of the git checkout that holds fashion-lab's own code, where it runs from one
    (an editable install of a clone). A package that is not tracked there (a venv inside someone's
    repository, a wheel) has none."""
    if _git(PACKAGE_DIR, "ls-files", "--error-unmatch", Path(__file__).name) is None:
        return None
    top, head = _git(PACKAGE_DIR, "rev-parse", "--show-toplevel"), _git(PACKAGE_DIR, "rev-parse", "HEAD")
    return (top, head) if top and head else None


def git_commit() -> Optional[str]:
    """The commit of fashion-lab's code that runs, if it runs from a git checkout."""
    found = _checkout()
    return found[1] if found else None


def workdir_commit(folder: Optional[Path] = None) -> Optional[str]:
    """HEAD of the git repository the command runs in (the user's own sweep files), when that is not
    fashion-lab's checkout: recorded apart, never as fashion-lab's commit."""
    folder = Path(folder or os.getcwd())
    top = _git(folder, "rev-parse", "--show-toplevel")
    if top is None or (_checkout() or ("",))[0] == top:
        return None
    return _git(folder, "rev-parse", "HEAD")


def system_tags() -> dict[str, str]:
    """MLflow's system tags (``mlflow.user``, ``mlflow.source.name``, ``mlflow.source.type``) as
    ``mlflow.start_run`` sets them; ``client.create_run`` sets none. Git tags come from ``provenance_tags``:
    MLflow's own would take the repository of the script's path, which may be someone else's."""
    from mlflow.tracking.context.default_context import DefaultRunContext

    return DefaultRunContext().tags()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def where_tags() -> dict[str, str]:
    """Where this run ran: the host, and the SLURM job when it runs as one."""
    tags = {TAG + "host": socket.gethostname()}
    env = os.environ
    # An array task (submitit submits arrays) is named ARRAY_TASK, as sacct, scancel and submitit name it.
    job = (f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
           if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID") else env.get("SLURM_JOB_ID"))
    if job:
        tags[TAG + "slurm_job_id"] = job
    return tags


def provenance_tags(overrides: list[str], seed: int) -> dict[str, str]:
    tags = {
        TAG + "overrides": " ".join(overrides),
        TAG + "command": " ".join(["fashion-lab", "train", *overrides]),
        TAG + "seed": str(seed),
        TAG + "owner": process_id(),
        **where_tags(),
    }
    tags.update({f"{TAG}version.{k}": v for k, v in package_versions().items()})
    return {**tags, **commit_tags()}


def commit_tags() -> dict[str, str]:
    """fashion-lab's commit (MLflow's ``mlflow.source.git.commit`` and ``fashion_lab.git_commit``), and the
    working folder's own repository's commit (``fashion_lab.workdir.git_commit``) where it is another one."""
    tags = {}
    if commit := git_commit():
        tags[TAG + "git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit
    if work := workdir_commit():
        tags[TAG + "workdir.git_commit"] = work
    return tags


def reap_orphans(client, experiment_id) -> int:
    """Close RUNNING runs whose owning process on this host is gone (e.g. SIGKILL) as KILLED.
    ``experiment_id`` may be one id or a list of them."""
    ids = [experiment_id] if isinstance(experiment_id, str) else list(experiment_id)
    if not ids:
        return 0
    host = socket.gethostname()
    orphans = client.search_runs(
        ids,
        filter_string=f"attributes.status = 'RUNNING' and tags.`{TAG}host` = '{host}'",
        max_results=1000)
    reaped = 0
    for run in orphans:
        owner = run.data.tags.get(TAG + "owner")
        if owner and not owner_alive(owner):
            client.set_tag(run.info.run_id, TAG + "failure", f"process {owner} {REAPED}")
            client.set_terminated(run.info.run_id, status="KILLED")
            reaped += 1
    return reaped


def close_dead_runs(uri: str, experiments=None) -> None:
    """For the reading commands: close as KILLED the runs a killed process left RUNNING in the named
    experiments (all when None), so no report or UI lists them as running. Never fails the command."""
    store = client(uri)
    try:
        found = ([store.get_experiment_by_name(n) for n in experiments] if experiments
                 else store.search_experiments(max_results=1000))
        reap_orphans(store, [e.experiment_id for e in found if e is not None])
    except Exception as error:  # noqa: BLE001 - a read-only store still gets its report
        print(f"fashion-lab: could not close dead runs in {uri}: {type(error).__name__}: "
              f"{str(error).splitlines()[0] if str(error) else ''}", file=sys.stderr)


def reap(tracking_cfg) -> int:
    """Close the experiment's runs whose process on this host died (SIGKILL) as KILLED."""
    client = client_for(tracking_cfg)
    return reap_orphans(client, ensure_experiment(client, tracking_cfg))
