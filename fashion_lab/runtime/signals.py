"""Ctrl-C and SIGTERM: both unwind a run or a sweep as interrupted, and are remembered.

SIGTERM raises ``Terminated`` (like Ctrl-C's KeyboardInterrupt), so a run is closed KILLED, not left
RUNNING. Plain Python: no MLflow, no TensorFlow.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Iterator, Optional


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C so the run is closed KILLED, not left RUNNING."""


# Ctrl-C or SIGTERM signals this process received and has not acted on yet. A library may catch the
# exception a signal raised and raise its own instead (TensorFlow does while it traces a layer:
# "Failed to convert elements ... to Tensor"), or swallow it; this record lets the run and the sweep
# still unwind as interrupted.
_SIGNALLED: list[BaseException] = []


def raise_terminated(signum, frame):
    """A SIGTERM handler: unwind like Ctrl-C."""
    _SIGNALLED.append(Terminated(f"signal {signum}"))
    raise _SIGNALLED[-1]


def raise_interrupted(signum, frame):
    """A SIGINT handler: Python's own KeyboardInterrupt, remembered."""
    _SIGNALLED.append(KeyboardInterrupt())
    raise _SIGNALLED[-1]


def install_signal_handlers() -> Callable[[], None]:
    """SIGTERM and Ctrl-C raise remembered exceptions (main thread only); returns what restores the
    previous handlers. An ignored SIGINT (a job started with ``cmd &``) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, raise_terminated)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, raise_interrupted)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return restore


def take_signal(error: Optional[BaseException] = None) -> Optional[BaseException]:
    """The Ctrl-C or SIGTERM behind ``error``: ``error`` itself, or the signal a library turned into
    ``error`` or swallowed; None if there was none. Once taken, a signal is not reported again."""
    pending = _SIGNALLED[-1] if _SIGNALLED else None
    _SIGNALLED.clear()
    return error if isinstance(error, (KeyboardInterrupt, Terminated)) else pending


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """For the duration of a run, SIGTERM and Ctrl-C unwind it as interrupted, even when a library
    caught the signal's exception and raised another error in its place."""
    restore = install_signal_handlers()
    try:
        yield
    except BaseException as error:
        if (stop := take_signal(error)) is not None and stop is not error:
            raise stop from error
        raise
    finally:
        restore()
