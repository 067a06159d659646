"""kill -9 a real command at a chosen moment, read from its store: the resume tests' one way to die."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable

import pytest

from conftest import FASHION_LAB


def kill_when(args: list[str], cwd, env: dict, ready: Callable[[], bool], what: str, timeout: float = 240) -> None:
    """Start ``fashion-lab *args`` and kill -9 it as soon as ``ready()`` (fails the test if it never is).
    ``ready`` may raise while the store is still being created: that counts as not yet."""
    proc = subprocess.Popen([FASHION_LAB, *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                if ready():
                    break
            except Exception:  # noqa: BLE001 - a store half-created, or not there yet
                pass
            time.sleep(0.3)
        else:
            pytest.fail(f"{what} never happened")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
