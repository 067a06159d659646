"""A server process group that goes down with the command that started it, even on kill -9.

``fashion-lab ui`` starts ``mlflow ui`` in a process group of its own (so Ctrl-C reaches every
worker); a kill -9 of the command once left that server serving the store and holding the port.
Two lines of defence: the server gets PR_SET_PDEATHSIG (the kernel signals it when its parent dies),
and a watchdog holds a pipe from the command: when the command dies, however it dies, the pipe
closes and the watchdog stops the server's whole group, workers included (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from typing import Callable

_PR_SET_PDEATHSIG = 1

# The watchdog: blocks on its stdin (the command's end of a pipe); EOF means the command is gone.
WATCHDOG = """
import os, signal, sys, time
pgid, grace = int(sys.argv[1]), float(sys.argv[2])
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the command's to handle
while sys.stdin.buffer.read(1):
    pass
for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 0)):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        break
    deadline = time.time() + wait
    while time.time() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            sys.exit(0)
        time.sleep(0.1)
"""


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child is sent ``sig`` when the process that starts it dies (Linux)."""
    parent = os.getpid()

    def arm() -> None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))
        except (OSError, AttributeError):  # not Linux: the watchdog alone stops the group
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return arm


def guard_group(pgid: int, grace_s: float = 5.0) -> subprocess.Popen:
    """Start the watchdog of process group ``pgid``; it stops the group once this process dies.

    Keep the returned Popen (its stdin is the pipe) for as long as the group should live; close its
    stdin to stop the group on purpose. The watchdog has a session of its own, so a signal to this
    command's group does not end it before it has done its job."""
    return subprocess.Popen([sys.executable, "-c", WATCHDOG, str(pgid), str(grace_s)], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, start_new_session=True)
