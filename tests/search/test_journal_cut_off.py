"""An Optuna journal whose last append was cut off (kill -9 mid-write) is refused in one line naming the
file and the line, before Optuna appends to it: Optuna skips a cut-off last line when reading, but its
next append is glued onto it and every later read fails on a JSON traceback (checked below, for real)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fashion_lab.search.state_files import BrokenState, check_state_files

WRITE = """
import os, sys, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(sys.argv[1])))
study.optimize(lambda t: t.suggest_float("a", 0, 1), n_trials=3)
"""
APPEND = """
import sys, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(sys.argv[1])))
try:
    study.optimize(lambda t: t.suggest_float("a", 0, 1), n_trials=1)
except Exception:
    pass
"""
READ = """
import sys, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(sys.argv[1])))
"""


@pytest.fixture
def cut_journal(tmp_path):
    """A real Optuna journal of 3 trials whose last line is cut where a kill mid-append leaves it."""
    journal = tmp_path / "optuna.journal"
    subprocess.run([sys.executable, "-c", WRITE, str(journal)], check=True, timeout=120)
    data = journal.read_bytes()
    journal.write_bytes(data[:-25])
    return journal


def test_optuna_itself_breaks_the_journal_for_good_on_its_next_append(cut_journal):
    """Why the check exists: Optuna's next appends fail, then make the journal unreadable."""
    spoiled = cut_journal.with_name("copy.journal")
    spoiled.write_bytes(cut_journal.read_bytes())
    for _ in range(2):  # the first append fails (an AttributeError inside Optuna) and is glued on
        subprocess.run([sys.executable, "-c", APPEND, str(spoiled)], check=True, timeout=120)
    result = subprocess.run([sys.executable, "-c", READ, str(spoiled)], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "JSONDecodeError" in result.stderr


def test_a_cut_off_journal_is_refused_in_one_line_naming_it(cut_journal):
    lines = cut_journal.read_bytes().count(b"\n") + 1
    with pytest.raises(BrokenState) as refused:
        check_state_files(cut_journal.parent)
    message = str(refused.value)
    assert "\n" not in message and str(cut_journal) in message and f"line {lines} is cut off" in message


def test_a_journal_broken_in_the_middle_is_refused_and_a_whole_one_passes(tmp_path):
    journal = tmp_path / "optuna.journal"
    subprocess.run([sys.executable, "-c", WRITE, str(journal)], check=True, timeout=120)
    check_state_files(tmp_path)  # whole: nothing to say
    rows = journal.read_text().splitlines()
    rows[2] = rows[2][:30] + json.dumps({"op_code": 4})
    journal.write_text("\n".join(rows) + "\n")
    with pytest.raises(BrokenState, match="line 3 is cut off"):
        check_state_files(tmp_path)
