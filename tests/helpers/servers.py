"""Real servers for slow tests: PostgreSQL 15, ``mlflow server``, munge, MariaDB + slurmdbd, SLURM.

Each is a context manager that starts its processes in a fresh temp folder, listening on
127.0.0.1 only, each in its own session (process group), and stops exactly those groups on
exit: never anything found by name, since other programs on the machine run the same binaries.
Everything here runs as root (CI, these test machines); daemons that refuse root run as their
Debian users (postgres, munge, mysql), so their folders are made traversable for them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

import pytest

LOOPBACK = "127.0.0.1"


# --- plumbing -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def need(*programs: str) -> None:
    """Skip (with the package to install) when a server's program is missing or we are not root."""
    missing = [p for p in programs if shutil.which(p) is None and not Path(p).exists()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install postgresql slurm-wlm slurmdbd munge "
                    f"mariadb-server)")
    if os.geteuid() != 0:
        pytest.skip("starts daemons as their system users: run as root (as CI does)")


def shared_dir(prefix: str) -> Path:
    """A temp folder other system users can enter (mkdtemp makes it 0700)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


def chown(path: Path, user: str) -> Path:
    shutil.chown(path, user, user)
    return path


def subdir(root: Path, name: str, user: str) -> Path:
    path = root / name
    path.mkdir()
    return chown(path, user)


def wait_for(check, what: str, timeout: float, proc: Optional[subprocess.Popen] = None,
             log: Optional[Path] = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    state = f"exited {proc.returncode}" if proc is not None and proc.poll() is not None else "still starting"
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s ({state})\n{tail}")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((LOOPBACK, port)) == 0


class Group:
    """One daemon started in its own session; ``stop`` ends that process group, and only it."""

    def __init__(self, args: list[str], log: Path, env: Optional[dict] = None, user: Optional[str] = None,
                 cwd: Optional[Path] = None):
        self.log = log
        command = ["runuser", "-u", user, "--", *args] if user else list(args)
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, cwd=cwd, start_new_session=True)
        self.pgid = self.proc.pid  # start_new_session: the child leads its own group

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
            if not _group_alive(self.pgid):
                return


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies left in a container whose PID 1 does not reap still count for killpg(0): look closer.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("timeout", 60)
    out = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
    return out


# --- PostgreSQL -----------------------------------------------------------------------------

def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else name


@contextlib.contextmanager
def postgres(database: str = "mlflow") -> Iterator[str]:
    """A PostgreSQL cluster (initdb in a temp dir, run as ``postgres``); yields the database's URI."""
    need(_pg_bin("initdb"), _pg_bin("pg_ctl"))
    root = shared_dir("fl-pg-")
    data = subdir(root, "data", "postgres")
    chown(root, "postgres")
    port = free_port()
    log = root / "postgres.log"
    as_pg = ["runuser", "-u", "postgres", "--"]
    run([*as_pg, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"], timeout=120)
    run([*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
         f"-p {port} -k {root} -c listen_addresses={LOOPBACK} -c fsync=off", "start"], timeout=90)
    try:
        run([*as_pg, _pg_bin("createdb"), "-h", LOOPBACK, "-p", str(port), database])
        yield f"postgresql://postgres@{LOOPBACK}:{port}/{database}"
    finally:
        subprocess.run([*as_pg, _pg_bin("pg_ctl"), "-D", str(data), "stop", "-m", "fast", "-w"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


# --- mlflow server --------------------------------------------------------------------------

class MlflowServer:
    """``mlflow server`` with proxied artifacts; ``stop``/``start`` to simulate an outage."""

    def __init__(self, backend_uri: str, root: Path, app_name: Optional[str] = None,
                 admin: tuple[str, str] = ("admin", "fashion-lab-test-pw")):
        self.backend_uri, self.root, self.app_name, self.admin = backend_uri, root, app_name, admin
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.group: Optional[Group] = None

    def start(self, timeout: float = 90) -> "MlflowServer":
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        args = [sys.executable, "-m", "mlflow", "server", "--host", LOOPBACK, "--port", str(self.port),
                "--backend-store-uri", self.backend_uri,
                "--artifacts-destination", (self.root / "artifacts").as_uri(), "--workers", "1"]
        if self.app_name:
            ini = self.root / "basic_auth.ini"
            ini.write_text("[mlflow]\ndefault_permission = READ\n"
                           f"database_uri = sqlite:///{self.root / 'auth.db'}\n"
                           f"admin_username = {self.admin[0]}\nadmin_password = {self.admin[1]}\n"
                           "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "fashion-lab-test-csrf-key"  # required by basic-auth
            args += ["--app-name", self.app_name]
        self.group = Group(args, self.root / "mlflow-server.log", env=env, cwd=self.root)
        wait_for(lambda: urllib.request.urlopen(f"{self.url}/health", timeout=2).status == 200,
                 "mlflow server", timeout, self.group.proc, self.group.log)
        return self

    def stop(self) -> None:
        if self.group is not None:
            self.group.stop()
            self.group = None


@contextlib.contextmanager
def mlflow_server(backend_uri: Optional[str] = None, app_name: Optional[str] = None) -> Iterator[MlflowServer]:
    """An ``mlflow server`` on ``backend_uri`` (default: a sqlite file in its temp dir)."""
    root = Path(tempfile.mkdtemp(prefix="fl-mlflow-", dir="/tmp"))
    server = MlflowServer(backend_uri or f"sqlite:///{root / 'mlflow.db'}", root, app_name)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- SLURM with accounting (munge, MariaDB, slurmdbd, slurmctld, slurmd) ---------------------

class Slurm:
    def __init__(self, conf: Path, root: Path):
        self.conf, self.root = conf, root
        self.env = {**os.environ, "SLURM_CONF": str(conf)}

    def run(self, *args: str, timeout: float = 30) -> str:
        return run(list(args), env=self.env, timeout=timeout).stdout

    def job_states(self, job_ids: list[str], wait_s: float = 60) -> dict[str, str]:
        """Each job's final state from accounting. slurmdbd records a job's end a moment after the job
        ends (seconds on a loaded machine), so states still PENDING/RUNNING/COMPLETING, or missing, are
        asked again for up to ``wait_s``."""
        deadline = time.monotonic() + wait_s
        while True:
            out = self.run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(job_ids))
            states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
            settled = all(states.get(j, "").split()[:1] not in ([], ["PENDING"], ["RUNNING"], ["COMPLETING"])
                          for j in job_ids)
            if settled or time.monotonic() > deadline:
                return states
            time.sleep(1)


def _mariadb(root: Path, groups: list[Group]) -> tuple[int, str]:
    """MariaDB for slurmdbd; returns its port and the slurm user's password."""
    data = subdir(root, "mysql", "mysql")
    run(["mariadb-install-db", "--user=mysql", f"--datadir={data}", "--skip-test-db",
         "--auth-root-authentication-method=socket"], timeout=120)
    port, sock = free_port(), root / "mysql" / "mysqld.sock"
    group = Group(["mariadbd", "--user=mysql", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                   f"--bind-address={LOOPBACK}", f"--pid-file={data / 'mariadbd.pid'}", "--skip-log-bin",
                   "--innodb-buffer-pool-size=32M", "--innodb-flush-log-at-trx-commit=0"], root / "mariadb.log")
    groups.append(group)
    wait_for(lambda: sock.exists() and port_open(port), "mariadbd", 60, group.proc, group.log)
    password = "slurmdbd-test"
    run(["mariadb", f"--socket={sock}", "-u", "root", "-e",
         f"CREATE DATABASE slurm_acct_db; CREATE USER 'slurm'@'{LOOPBACK}' IDENTIFIED BY '{password}';"
         f"GRANT ALL ON slurm_acct_db.* TO 'slurm'@'{LOOPBACK}';"])
    return port, password


@contextlib.contextmanager
def slurm_cluster(cpus: int = 2) -> Iterator[Slurm]:
    """A one-node SLURM cluster with accounting (so submitit sees cancelled jobs through sacct)."""
    need("munged", "slurmctld", "slurmd", "slurmdbd", "sacctmgr", "mariadbd", "mariadb-install-db")
    if not Path("/etc/munge/munge.key").exists():
        run(["runuser", "-u", "munge", "--", "mungekey", "-c"])
    root = shared_dir("fl-slurm-")
    groups: list[Group] = []
    try:
        # munged as the munge user, on its own socket (AuthInfo below), pid file under /run/munge.
        munge_dir = subdir(root, "munge", "munge")
        run_munge = Path("/run/munge")
        run_munge.mkdir(exist_ok=True)
        chown(run_munge, "munge")
        sock = munge_dir / "munge.socket"
        munged = Group(["munged", "-F", f"--socket={sock}", f"--pid-file={run_munge / (root.name + '.pid')}",
                        f"--log-file={munge_dir / 'munged.log'}", f"--seed-file={munge_dir / 'munge.seed'}"],
                       root / "munged.out", user="munge")
        groups.append(munged)
        wait_for(sock.exists, "munged", 30, munged.proc, munge_dir / "munged.log")
        db_port, db_password = _mariadb(root, groups)

        host = socket.gethostname().split(".")[0]
        cluster = f"fl{os.getpid()}"
        ctld_port, slurmd_port, dbd_port = free_port(), free_port(), free_port()
        conf_dir = root / "etc"
        conf_dir.mkdir()
        for sub in ("state", "spool"):
            (root / sub).mkdir()
        auth = f"AuthType=auth/munge\nAuthInfo=socket={sock}\n"
        (conf_dir / "slurmdbd.conf").write_text(
            auth + f"DbdHost=localhost\nDbdAddr={LOOPBACK}\nDbdPort={dbd_port}\nSlurmUser=root\n"
            f"PidFile={root / 'slurmdbd.pid'}\nLogFile={root / 'slurmdbd.log'}\n"
            f"StorageType=accounting_storage/mysql\nStorageHost={LOOPBACK}\nStoragePort={db_port}\n"
            f"StorageUser=slurm\nStoragePass={db_password}\nStorageLoc=slurm_acct_db\n")
        (conf_dir / "slurmdbd.conf").chmod(0o600)
        conf = conf_dir / "slurm.conf"
        conf.write_text(
            auth + f"ClusterName={cluster}\nSlurmctldHost={host}({LOOPBACK})\n"
            f"SlurmctldPort={ctld_port}\nSlurmdPort={slurmd_port}\nSlurmUser=root\nSlurmdUser=root\n"
            f"StateSaveLocation={root / 'state'}\nSlurmdSpoolDir={root / 'spool'}\n"
            f"SlurmctldPidFile={root / 'slurmctld.pid'}\nSlurmdPidFile={root / 'slurmd.pid'}\n"
            f"SlurmctldLogFile={root / 'slurmctld.log'}\nSlurmdLogFile={root / 'slurmd.log'}\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nMpiDefault=none\nReturnToService=2\n"
            "SchedulerType=sched/backfill\nKillWait=5\nMinJobAge=300\nInactiveLimit=0\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort={dbd_port}\nAccountingStoragePass={sock}\n"  # munge socket for slurmdbd
            f"NodeName={host} NodeAddr={LOOPBACK} CPUs={cpus} State=UNKNOWN\n"
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n")
        slurm = Slurm(conf, root)
        dbd = Group(["slurmdbd", "-D"], root / "slurmdbd.out", env=slurm.env)
        groups.append(dbd)
        wait_for(lambda: port_open(dbd_port), "slurmdbd", 60, dbd.proc, root / "slurmdbd.log")
        wait_for(lambda: subprocess.run(["sacctmgr", "-i", "add", "cluster", cluster], env=slurm.env,
                                        capture_output=True, timeout=20).returncode == 0
                 or cluster in slurm.run("sacctmgr", "-n", "-P", "list", "cluster", "format=Cluster"),
                 "sacctmgr add cluster", 60, dbd.proc, root / "slurmdbd.log")
        ctld = Group(["slurmctld", "-D", "-i"], root / "slurmctld.out", env=slurm.env)
        groups.append(ctld)
        wait_for(lambda: port_open(ctld_port), "slurmctld", 60, ctld.proc, root / "slurmctld.log")
        slurmd = Group(["slurmd", "-D", "-N", host], root / "slurmd.out", env=slurm.env)
        groups.append(slurmd)
        wait_for(lambda: "idle" in slurm.run("sinfo", "-h", "-o", "%T"), "slurmd (node idle)", 60,
                 slurmd.proc, root / "slurmd.log")
        yield slurm
    finally:
        for group in reversed(groups):
            group.stop()
        with contextlib.suppress(OSError):
            (Path("/run/munge") / (root.name + ".pid")).unlink()
        if os.environ.get("FASHION_LAB_KEEP_SERVERS") is None:
            shutil.rmtree(root, ignore_errors=True)
