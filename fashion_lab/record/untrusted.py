"""Reading a shared store safely: what it holds never decides where files go or what is read locally.

Anyone who can write to a team's tracking server can write any sweep name or config into it.
A name becomes one plain path component; a logged config is plain values, never interpolations
(``${oc.env:...}`` would read this machine's environment and send it back to the store).
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class UntrustedValue(ValueError):
    """A value read from the store that fashion-lab refuses to act on."""


def path_component(name: str, default: str = "report") -> str:
    """``name`` as one file name: no separators, no leading dots (``../../tmp/x`` -> ``_.._tmp_x``)."""
    safe = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", str(name)).lstrip(".")
    return safe[:120] or default


def _interpolations(node: Any, key: str = "") -> list[str]:
    if isinstance(node, dict):
        return [k for name, value in node.items() for k in _interpolations(value, f"{key}.{name}" if key else str(name))]
    if isinstance(node, list):
        return [k for i, value in enumerate(node) for k in _interpolations(value, f"{key}[{i}]")]
    return [key] if isinstance(node, str) and "${" in node else []


def plain_config(text: str, source: str = "the logged config") -> dict:
    """A logged config.yaml as plain values; refuses interpolations (fashion-lab logs configs resolved,
    so one can only have been planted) and anything that is not a mapping."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise UntrustedValue(f"{source} is not a mapping of config keys")
    found = _interpolations(data)
    if found:
        raise UntrustedValue(f"{source} holds interpolations (${{...}}) at {', '.join(found[:5])}; fashion-lab "
                             f"logs configs fully resolved, so this record was altered; refusing to resolve them")
    return data


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...), +cmd|...).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A store's text as a CSV cell a spreadsheet shows, never runs: a leading ' before a formula start."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def csv_safe(frame):
    """A copy of a DataFrame whose text cells and column names are ``csv_cell``: runs.csv, effects.csv."""
    safe = frame.map(csv_cell) if hasattr(frame, "map") else frame.applymap(csv_cell)
    return safe.rename(columns=csv_cell)
