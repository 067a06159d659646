"""A kept record (``offline.Spool``) read as untrusted data, checked whole before ``upload`` sends any of it.

A record folder may come from anyone (a colleague's disk, a shared folder): ``run.json`` and
``calls.jsonl`` are checked against the shapes fashion-lab itself writes, every call's operation
against an allow-list, and every artifact folder must lie inside the record, with no symlink or
special file leading out. Anything else is a ``SpoolError``: one line naming the file and entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from fashion_lab.config import mask_userinfo
from fashion_lab.record.names import TAG

RUN_FILE = "run.json"
CALLS_FILE = "calls.jsonl"
SECRET = "spool_secret"   # run.json: a random secret only the record holds
DIGEST_TAG = TAG + "spool_digest"  # on the run: sha256 of that secret, the proof the record made the run
STATUSES = ("FINISHED", "FAILED", "KILLED")
_HEX = re.compile(r"[0-9a-f]{32,64}")


class SpoolError(ValueError):
    """A record upload refuses: one line naming the file, the entry and what is allowed."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Record:
    """A checked record: its identity, its calls (artifact folders as absolute paths inside it)."""
    folder: Path
    run_id: str
    experiment: str
    run_name: Optional[str]
    tags: dict[str, str]
    params: dict[str, str]
    secret: str
    not_kept: int   # calls of the run that reached its first store and are not in the record
    source: str     # the store it was recorded for (masked; shown, never used)
    calls: list[tuple[str, dict[str, Any]]]


# --- shapes -------------------------------------------------------------------------------------

def _text(v: Any) -> bool:
    return isinstance(v, str)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _scalars(v: Any) -> bool:
    return isinstance(v, dict) and all(_text(k) and (v[k] is None or isinstance(v[k], (str, int, float, bool)))
                                       for k in v)


def _plain(v: Any) -> bool:
    """A config value: a scalar or a list of them (a list-valued key such as model.filters)."""
    return v is None or isinstance(v, (str, int, float, bool)) or (isinstance(v, list) and all(map(_plain, v)))


def _params(v: Any) -> bool:
    return isinstance(v, dict) and all(_text(k) and _plain(x) for k, x in v.items())


def _metrics(v: Any) -> bool:
    return isinstance(v, dict) and all(_text(k) and _number(x) for k, x in v.items())


def _own_tags(v: Any) -> bool:
    # Only fashion-lab's own tags, never the proof: mlflow.* tags (a parent, a name) are set at creation.
    return _scalars(v) and all(k.startswith(TAG) and k != DIGEST_TAG for k in v)


def _shape(v: Any) -> bool:
    return isinstance(v, list) and all(_whole(n) and n >= 0 for n in v)


def _dtype(v: Any) -> bool:
    return _text(v) and re.fullmatch(r"(u?int|float|bool)\d{0,2}", v) is not None


# one split, as data.describe_splits writes it (record/run.dataset_entity reads every key)
_SPLIT = {"name": _text, "context": _text, "digest": _text, "source_digest": _text, "origin": _text,
          "directory": lambda v: v is None or _text(v), "files": lambda v: isinstance(v, list) and all(map(_text, v)),
          "settings": _scalars, "num_rows": _whole, "features_shape": _shape, "features_dtype": _dtype,
          "targets_shape": _shape, "targets_dtype": _dtype}


def _splits(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(s, dict) and set(s) == set(_SPLIT) and
                                       all(check(s[k]) for k, check in _SPLIT.items()) for s in v)


def _maybe_whole(v: Any) -> bool:
    return v is None or _whole(v)


# op -> {argument: (check, required)}: exactly what the Recorder keeps (run.py SENDERS)
OPERATIONS: dict[str, dict[str, tuple[Callable[[Any], bool], bool]]] = {
    "params": {"params": (_params, True)},
    "metrics": {"metrics": (_metrics, True), "step": (_whole, False), "timestamp": (_maybe_whole, False)},
    "tags": {"tags": (_own_tags, True)},
    "artifacts": {"directory": (_text, True)},
    "dataset": {"name": (_text, True), "digest": (_text, True), "source": (_text, True), "context": (_text, False)},
    "datasets": {"splits": (_splits, True)},
    "terminate": {"status": (lambda v: v in STATUSES, True), "end_time": (_maybe_whole, False)},
}


# --- the record ---------------------------------------------------------------------------------

def _inside(folder: Path, path: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def _read(folder: Path, name: str) -> Optional[str]:
    path = folder / name
    if not path.exists():
        return None
    if not _inside(folder, path) or not path.is_file():
        raise SpoolError(f"{path} is not allowed: a record's {name} must be a plain file inside the record")
    return path.read_text()


def _identity(folder: Path) -> dict[str, Any]:
    where = folder / RUN_FILE
    try:
        identity = json.loads(_read(folder, RUN_FILE) or "")
    except ValueError:
        raise SpoolError(f"{where} is not a record's identity: not JSON") from None
    checks = {"run_id": lambda v: _text(v) and re.fullmatch(r"[0-9a-f]{32}", v),
              "experiment": lambda v: _text(v) and 0 < len(v) <= 500, "run_name": lambda v: v is None or _text(v),
              "tags": lambda v: _scalars(v), "params": lambda v: _scalars(v),
              SECRET: lambda v: _text(v) and _HEX.fullmatch(v), "not_kept": _whole}
    if not isinstance(identity, dict):
        raise SpoolError(f"{where} is not a record's identity: not a JSON object")
    if SECRET not in identity:
        raise SpoolError(f"{where} has no {SECRET}: kept by an older fashion-lab, so upload cannot prove which "
                         f"run it made; nothing sent (upload it with that fashion-lab version)")
    for key, check in checks.items():
        if key in ("run_id", "experiment") and key not in identity:
            raise SpoolError(f"{where} has no {key}: not a record's identity")
        if key in identity and not check(identity[key]):
            raise SpoolError(f"{where}: {key}={str(identity[key])[:80]!r} is not allowed here")
    return identity


def _call(folder: Path, number: int, line: str) -> tuple[str, dict[str, Any]]:
    where = f"{folder / CALLS_FILE} line {number}"
    try:
        call = json.loads(line)
    except ValueError:
        raise SpoolError(f"{where}: not JSON") from None
    op = call.get("op") if isinstance(call, dict) else None
    kwargs = call.get("kwargs") if isinstance(call, dict) else None
    if op not in OPERATIONS or not isinstance(kwargs, dict):
        raise SpoolError(f"{where}: operation {str(op)[:40]!r} is not allowed; a record holds only "
                         f"{', '.join(OPERATIONS)}, each with its own arguments")
    shape = OPERATIONS[op]
    for name, value in kwargs.items():
        if name not in shape or not shape[name][0](value):
            raise SpoolError(f"{where}: {op} argument {name}={str(value)[:80]!r} is not allowed "
                             f"({op} takes {', '.join(shape)}, as fashion-lab writes them)")
    missing = [name for name, (_, required) in shape.items() if required and name not in kwargs]
    if missing:
        raise SpoolError(f"{where}: {op} lacks {', '.join(missing)}")
    if op == "artifacts":
        kwargs = {"directory": _artifact_folder(folder, where, kwargs["directory"])}
    return op, kwargs


def _artifact_folder(folder: Path, where: str, name: str) -> Path:
    """The artifact folder ``name`` as an absolute path, if it and all it holds stay inside the record."""
    path = folder / name
    if Path(name).is_absolute() or ".." in Path(name).parts or not _inside(folder, path) or not path.is_dir():
        raise SpoolError(f"{where}: artifacts directory {name!r} is not allowed: artifacts are sent only from a "
                         f"folder inside the record (a relative name such as artifacts-0, no '..', no symlink out)")
    for root, dirs, files in os.walk(path):
        for entry in (Path(root) / n for n in dirs + files):
            if entry.is_symlink() and not _inside(folder, entry):
                raise SpoolError(f"{where}: {entry} is a symlink to {entry.resolve()}, outside the record; "
                                 f"artifacts are sent only from inside the record's folder")
            if not (entry.is_dir() or entry.is_file()):  # a FIFO, a device, a broken link
                raise SpoolError(f"{where}: {entry} is not a plain file; artifacts are files and folders only")
    return path.resolve()


def read_record(folder: Path) -> Record:
    """The record in ``folder``, checked whole; ``SpoolError`` names the first thing not allowed."""
    folder = Path(folder)
    identity = _identity(folder)
    lines = (_read(folder, CALLS_FILE) or "").splitlines()
    calls = [_call(folder, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    return Record(folder=folder, run_id=identity["run_id"], experiment=identity["experiment"],
                  run_name=identity.get("run_name"), tags={k: str(v) for k, v in identity.get("tags", {}).items()},
                  params={k: str(v) for k, v in identity.get("params", {}).items()}, secret=identity[SECRET],
                  not_kept=identity.get("not_kept", 0), source=mask_userinfo(str(identity.get("uri", ""))),
                  calls=calls)
