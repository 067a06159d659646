"""fresh_process.call_in_fresh_process: results and errors cross back, and the child dies with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fashion_lab.runtime.fresh_process import ChildProcessDied, call_in_fresh_process

HERE = Path(__file__).resolve().parent


class Refused(ValueError):
    pass


def pid_and_square(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


def raise_refused(message: str) -> None:
    raise Refused(message)


def die_hard() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def write_pid_then_sleep(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def test_result_comes_back_from_another_process():
    pid, square = call_in_fresh_process(pid_and_square, 7)
    assert square == 49 and pid != os.getpid()


def test_exception_is_re_raised_with_its_type_and_message():
    with pytest.raises(Refused, match="bad value 3"):
        call_in_fresh_process(raise_refused, "bad value 3")


def test_a_killed_child_is_an_error_not_a_hang():
    with pytest.raises(ChildProcessDied, match="exit code -9"):
        call_in_fresh_process(die_hard)


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # exited; reaped later by whoever inherited it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_child_dies_when_its_parent_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import test_fresh_process as t; "
         "from fashion_lab.runtime.fresh_process import call_in_fresh_process as call; "
         "call(t.write_pid_then_sleep, sys.argv[2])", str(HERE), str(pid_file)],
        stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.time() < deadline, "the child never started"
        time.sleep(0.1)
    child = int(pid_file.read_text())
    assert not _dead(child)
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while not _dead(child):
        assert time.time() < deadline, "the child outlived its SIGKILLed parent"
        time.sleep(0.1)
