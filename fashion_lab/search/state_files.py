"""A search's state files, written whole or not at all, and refused in one line when one is broken.

A kill or a full disk in the middle of an in-place write left a 0-byte ``oracle.json`` or
``trial.json`` under its final name, and every later resume died in a JSON traceback. Each file is
now written to a temporary file in the same folder, flushed to disk, then renamed over the old one
(``os.replace`` is atomic on one file system): a reader sees the old file or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from fashion_lab.search.space import SpaceError

# The JSON files KerasTuner and fashion-lab keep in a search folder (tuner0.json: see keras_tuner_fixes).
STATE_GLOBS = ("fashion_lab.json", "oracle.json", "tuner0.json", "trial_*/trial.json")
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: a temporary file is 0600, the state file keeps the mode open() gave it


class BrokenState(SpaceError):
    """A search's state file is empty or not JSON: the search cannot resume from it."""


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that ``path`` never holds a partial file (temp file, fsync, rename)."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:  # a full disk, a signal: the old file stays, the temporary one goes
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # the rename itself is durable once the folder is flushed
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def atomic_write_json(path: str | os.PathLike, state) -> str:
    """``state`` as JSON, written atomically; returns the text (what KerasTuner's save returns)."""
    text = json.dumps(state)
    atomic_write_text(path, text)
    return text


def read_state(path: Path) -> dict:
    """A state file's JSON object; BrokenState naming the file when it is empty or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        size = path.stat().st_size if path.exists() else 0
        why = "is empty" if size == 0 else f"is not valid JSON ({type(error).__name__})"
        raise BrokenState(_broken(path, why)) from None
    if not isinstance(data, dict):
        raise BrokenState(_broken(path, "is not a JSON object"))
    return data


def _broken(path: Path, why: str) -> str:
    return (f"search state file {path} {why}: it was cut short (a kill or a full disk mid-save), so the search "
            f"cannot resume; restore it, or start over with tuner.overwrite=true or another tuner.project")


def check_state_files(directory: Path) -> None:
    """Refuse a search folder holding any broken state file, before anything reads it."""
    for pattern in STATE_GLOBS:
        for path in sorted(directory.glob(pattern)):
            read_state(path)
    check_journal(directory / "optuna.journal")


def check_journal(path: Path) -> None:
    """Refuse an Optuna journal whose last write was cut off (a kill or a full disk mid-append). Optuna
    skips a cut-off last line when it reads, but its next append is glued onto it, and from then on
    every read of the journal fails on that line: so the search is stopped before it writes."""
    if not path.is_file():
        return
    data = path.read_bytes()
    lines = data.split(b"\n")
    cut = [] if not data or data.endswith(b"\n") else [len(lines)]
    bad = cut or [n for n, line in enumerate(lines[:-1], 1) if not _json_line(line)][:1]
    if bad:
        raise BrokenState(f"search state file {path}: line {bad[0]} is cut off mid-write (a kill or a full disk), "
                          f"so the search cannot resume; delete that line (the trials before it are kept), or "
                          f"start over with tuner.overwrite=true or another tuner.project")


def _json_line(line: bytes) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False
