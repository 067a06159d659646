"""Store and file faults: each answered in one line before data loads; every run closed; nothing half-written.

Real sqlite stores, real files, the real CLI in a subprocess. The read-only and disk-full cases
mount a small tmpfs when run as root (read-only otherwise comes from file permissions; the
disk-full test is skipped, with the reason, when not root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FASHION_LAB, cli_env
from helpers.refusals import assert_refused, store_runs

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
TRAIN = ("train", "data=synthetic", "trainer.epochs=1", "trainer.verbose=0")


@pytest.fixture(scope="session")
def store_template(tmp_path_factory) -> Path:
    """An empty but real MLflow sqlite store (tables created by MLflow itself), copied per test."""
    import mlflow

    db = tmp_path_factory.mktemp("template") / "m.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def good_store(tmp_path, store_template) -> Path:
    db = tmp_path / "store" / "m.db"
    db.parent.mkdir()
    shutil.copy(store_template, db)
    return db


@contextlib.contextmanager
def mounted_tmpfs(path: Path, size: str, read_only: bool = False):
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_dir(path: Path):
    """A directory nobody can write into: a read-only mount as root (root ignores permissions)."""
    if IS_ROOT:
        with mounted_tmpfs(path, "1m", read_only=True):
            yield path
    else:
        path.mkdir()
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)


@contextlib.contextmanager
def silent_server():
    """A TCP port that accepts connections and never answers (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        server.close()


def created(folder: Path) -> list[str]:
    """What a command left in its working directory, besides Hydra's own outputs/ folder."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.relative_to(folder).parts[0] != "outputs")


def handles_sigterm(pid: int) -> bool:
    """Whether the process has installed a SIGTERM handler yet (bit 15 of SigCgt in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the store is checked before any data loads --------------------------------------------------

def _truncate(db: Path) -> None:
    size = db.stat().st_size
    with open(db, "r+b") as f:
        f.truncate(size // 2)


def _scribble(db: Path) -> None:
    with open(db, "r+b") as f:  # keep the header, ruin every later page
        f.seek(4096)
        f.write(os.urandom(db.stat().st_size - 4096))


def _not_mlflow(db: Path) -> None:
    db.unlink()
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")


def _half_migrated(db: Path) -> None:
    """What a killed migration leaves (plain mlflow builds a new store in place): an earlier revision."""
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0584bdc529eb'")


# (case id, how to spoil the store file or None, tracking overrides, fragment of the reason)
FILE_FAULTS = [
    ("0-byte file", lambda db: db.write_bytes(b""), "0-byte"),
    ("truncated sqlite", _truncate, "truncated"),
    ("corrupt sqlite", _scribble, "corrupt"),
    ("not sqlite", lambda db: db.write_text("hello\n" * 1000), "not an SQLite database"),
    ("sqlite but not mlflow", _not_mlflow, "not an MLflow store"),
    ("half-migrated mlflow", _half_migrated, "schema revision 0584bdc529eb, this MLflow needs"),
]


@pytest.mark.parametrize("spoil,reason", [pytest.param(s, r, id=i) for i, s, r in FILE_FAULTS])
@pytest.mark.parametrize("command", [TRAIN, ("report",), ("reproduce", "0123abcd")], ids=lambda c: c[0])
def test_damaged_store_files_are_refused_in_one_line(cli_in_process, good_store, spoil, reason, command):
    spoil(good_store)
    before = good_store.read_bytes()
    result = cli_in_process(*command, f"tracking.uri=sqlite:///{good_store}", timeout=120)
    message = assert_refused(result, "tracking.uri", str(good_store))
    assert reason in message
    assert good_store.read_bytes() == before  # untouched: never "repaired" into a new empty store


def test_a_store_whose_creation_is_killed_is_never_left_half_built(tmp_path):
    """kill -9 after the new store's migrations, before it is in place: no store under its name, and
    the next command builds a whole one (and removes what the killed one left)."""
    db = tmp_path / "m.db"
    killed = subprocess.run([sys.executable, "-c", f"""
import os, signal
from omegaconf import OmegaConf
from fashion_lab.record import client
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # dies where a kill -9 would hurt most
client.client_for(OmegaConf.create({{"uri": "sqlite:///{db}"}}))
"""], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not db.exists() and list(tmp_path.glob(".m.db.creating-*"))
    from omegaconf import OmegaConf

    from fashion_lab.record import client
    from fashion_lab.record.store import sqlite_problem

    client.client_for(OmegaConf.create({"uri": f"sqlite:///{db}"}))
    assert sqlite_problem(db) is None and not list(tmp_path.glob(".m.db.creating-*"))


MALFORMED = [
    ("sqlite:/relative.db", "three slashes"),
    ("sqlite://", "three slashes"),
    ("foo://bar", "unknown scheme"),
    ("", "empty"),
    ("http://", "no valid host"),
    ("http://localhost:notaport", "no valid host"),
]


@pytest.mark.parametrize("uri,reason", MALFORMED, ids=[u or "empty" for u, _ in MALFORMED])
def test_malformed_uris_are_refused(cli_in_process, tmp_path, uri, reason):
    result = cli_in_process(*TRAIN, f"tracking.uri={uri}")
    assert reason in assert_refused(result, "tracking.uri", repr(uri))
    assert created(tmp_path) == []


@pytest.mark.parametrize("name", ["", "'   '"])
def test_empty_experiment_name_is_refused(cli_in_process, tmp_path, name):
    result = cli_in_process(*TRAIN, f"tracking.uri=sqlite:///{tmp_path / 'm.db'}", f"tracking.experiment={name}")
    assert_refused(result, "tracking.experiment", "''" if not name else "'   '")
    assert not (tmp_path / "m.db").exists()


def test_read_only_store_directory_is_refused(run_cli, tmp_path):
    with read_only_dir(tmp_path / "ro") as folder:
        result = run_cli(*TRAIN, f"tracking.uri=sqlite:///{folder / 'm.db'}")
        message = assert_refused(result, "tracking.uri", str(folder / "m.db"))
        assert "not writable" in message
        assert not (folder / "m.db").exists()


@pytest.mark.skipif(not IS_ROOT, reason="remounting a store read-only needs root (mount)")
def test_existing_store_on_a_read_only_mount_is_refused_for_training(run_cli, tmp_path, store_template):
    folder = tmp_path / "mnt"
    with mounted_tmpfs(folder, "16m"):
        shutil.copy(store_template, folder / "m.db")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        result = run_cli(*TRAIN, f"tracking.uri=sqlite:///{folder / 'm.db'}")
        assert "read-only" in assert_refused(result, "tracking.uri", str(folder / "m.db"))
        assert store_runs(folder / "m.db") == []


def test_server_that_does_not_answer_is_refused_within_seconds(run_cli):
    with silent_server() as port:
        uri = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        result = run_cli(*TRAIN, f"tracking.uri={uri}", timeout=60)
        elapsed = time.monotonic() - started
    assert "no answer within 3 s" in assert_refused(result, "tracking.uri", uri)
    assert elapsed < 20  # the probe waits 3 s; the rest is Python start-up on a loaded machine


@pytest.mark.parametrize("uri", ["http://127.0.0.1:{port}", "postgresql://u@127.0.0.1:{port}/db"])
def test_server_or_database_that_refuses_connections_is_refused(run_cli, uri):
    uri = uri.format(port=free_port())
    assert "unreachable" in assert_refused(run_cli(*TRAIN, f"tracking.uri={uri}"), "tracking.uri", uri)


def test_a_real_answer_that_is_not_mlflow_is_refused(run_cli):
    import http.server

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        message = assert_refused(run_cli(*TRAIN, f"tracking.uri={uri}"), "tracking.uri", uri)
    finally:
        server.shutdown()
    assert "HTTP 404" in message


# --- reading commands never create a store, and close dead runs ----------------------------------

@pytest.mark.parametrize("command", [("report",), ("reproduce", "0123abcd"), ("ui", "ui.port=1")],
                         ids=lambda c: c[0])
@pytest.mark.parametrize("uri", ["sqlite:///mlflow.db", "sqlite:///sub/dir/m.db"])
def test_reading_commands_never_create_a_store(cli_in_process, tmp_path, command, uri):
    result = cli_in_process(*command, f"tracking.uri={uri}")
    assert "has no store" in assert_refused(result, "tracking.uri", uri)
    assert created(tmp_path) == []  # nothing at all: no db, no lock, no folder


def _dead_run(db: Path, metrics: dict | None = None, status: str = "RUNNING") -> str:
    """A run left as a killed process leaves it: RUNNING, owned by a pid that no longer exists."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    experiment = client.create_experiment("fashion-lab")
    run = client.create_run(experiment, run_name="killed", tags={
        "fashion_lab.host": socket.gethostname(), "fashion_lab.owner": "4194300:1"})
    for name, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, name, value)
    if status != "RUNNING":
        client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def test_report_closes_dead_runs(run_cli, good_store):
    _dead_run(good_store)
    run_cli("report", f"tracking.uri=sqlite:///{good_store}", "report.out=out", timeout=120)
    assert store_runs(good_store) == ["KILLED"]


def test_reproduce_of_a_run_without_metrics_compares_nothing_and_says_so(run_cli, good_store):
    run_id = _dead_run(good_store)
    result = run_cli("reproduce", run_id, f"tracking.uri=sqlite:///{good_store}", timeout=120)
    message = assert_refused(result, run_id, "no final metrics")
    assert "metrics match" not in result.stdout + message
    assert store_runs(good_store) == ["KILLED"]  # closed by reproduce; no new run


def test_reproduce_of_a_finished_run_with_only_timings_compares_nothing(run_cli, good_store):
    run_id = _dead_run(good_store, metrics={"train_seconds": 3.0}, status="FINISHED")
    result = run_cli("reproduce", run_id, f"tracking.uri=sqlite:///{good_store}", timeout=120)
    assert_refused(result, run_id, "nothing to compare")
    assert store_runs(good_store) == ["FINISHED"]


# --- SIGTERM on a single train -------------------------------------------------------------------

def _start_train(tmp_path: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([FASHION_LAB, "train", "data=synthetic",
                             "trainer.epochs=500", "trainer.verbose=0", *extra],
                            cwd=tmp_path, env=cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_epoch(db: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):  # read-only: polling must not create the file
            with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as connection:
                if connection.execute("SELECT count(*) FROM metrics WHERE key = 'val_accuracy'").fetchone()[0]:
                    return
        time.sleep(0.5)
    raise AssertionError("no epoch was logged")


def _stderr_lines(text: str) -> list[str]:
    # TensorFlow's C++ start-up notices (absl, oneDNN, CUDA stubs) and MLflow's store creation lines
    # are not ours; everything else on stderr is.
    noise = ("WARNING: All log messages before absl", "I0000 ", "E0000 ", "W0000 ", "INFO mlflow.store")
    return [line for line in text.splitlines() if line.strip() and not any(n in line for n in noise)]


@pytest.mark.slow  # trains until the first epoch is logged
def test_sigterm_during_training_closes_the_run_killed_in_one_line(tmp_path):
    db = tmp_path / "m.db"
    process = _start_train(tmp_path, f"tracking.uri=sqlite:///{db}")
    try:
        _wait_for_epoch(db)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143
    assert "Traceback" not in stderr
    assert _stderr_lines(stderr) == ["fashion-lab: terminated; run recorded as KILLED"]
    assert store_runs(db) == ["KILLED"]


def test_sigterm_before_any_run_exits_in_one_line(tmp_path):
    db = tmp_path / "m.db"
    process = _start_train(tmp_path, f"tracking.uri=sqlite:///{db}")
    deadline = time.monotonic() + 60
    while not handles_sigterm(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # composing the config or importing TensorFlow: no run yet
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    assert "Traceback" not in stderr
    lines = _stderr_lines(stderr)
    assert lines[-1:] == ["fashion-lab: terminated"] or lines == ["fashion-lab: terminated; run recorded as KILLED"]
    assert all(status != "RUNNING" for status in store_runs(db))


# --- disk full while artifacts are written -------------------------------------------------------

@pytest.mark.slow  # two short trainings
@pytest.mark.skipif(not IS_ROOT, reason="mounting a small tmpfs to fill needs root")
@pytest.mark.parametrize("layout", ["artifacts on the full disk", "store and artifacts on the full disk"])
def test_disk_full_closes_the_run_and_leaves_no_truncated_weights(run_cli, tmp_path, layout):
    """A 4 MiB tmpfs: the store (about 1 MB) and the small files fit, the tutorial network's 6.7 MB
    weights do not."""
    full = tmp_path / "full"
    with mounted_tmpfs(full, "4m"):
        if layout == "artifacts on the full disk":
            db, where = tmp_path / "m.db", (f"tracking.artifact_location={full.as_uri()}",)
        else:
            db, where = full / "m.db", ()
        result = run_cli(*TRAIN, f"tracking.uri=sqlite:///{db}", *where, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output
        assert "Traceback" not in output
        assert "No space left on device" in _stderr_lines(result.stderr)[-1]
        assert store_runs(db) == ["FAILED"]
        with sqlite3.connect(db) as connection:
            reason = connection.execute("SELECT value FROM tags WHERE key = 'fashion_lab.failure'").fetchone()[0]
        assert "No space left on device" in reason
        left = sorted(p.name for p in full.rglob("*") if p.is_file() and p.suffix not in (".db", ".lock"))
        assert "model.weights.h5" not in left and not any("partial" in name for name in left), left
        assert "config.yaml" in left  # what fit was written whole
        # The next train into the same store works (its reaper and its run are fine).
        again = run_cli(*TRAIN, f"tracking.uri=sqlite:///{db}", "tracking.log_weights=false",
                        "tracking.log_plots=false", timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert sorted(store_runs(db)) == ["FAILED", "FINISHED"]
