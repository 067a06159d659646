"""Refusal checks (from test_validation): one line naming key and value, and what a store holds after it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def store_runs(db: Path) -> list[str]:
    """Statuses of every run in a sqlite store ([] when there is no store or no table)."""
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        try:
            return [row[0] for row in connection.execute("SELECT status FROM runs")]
        except sqlite3.OperationalError:
            return []


def assert_refused(result, key: str, value: str, code: int = 2) -> str:
    """Exit code, one or two lines, no traceback, key and value named; returns the message."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, output
    message = "\n".join(lines)
    assert key in message and value in message, message
    return message
