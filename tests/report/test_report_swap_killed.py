"""A report killed while it swaps its new folder in never leaves ``report.out`` missing: the swap is
one exchange where the kernel can (renameat2), and where it cannot, the next report puts the old
folder back. Real kills: the swapping process SIGKILLs itself right after its first rename."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO

from fashion_lab.report import output

SWAP = """
import os, signal, sys
from pathlib import Path
from fashion_lab.report import output
if sys.argv[2] == "two renames":
    output._exchange = lambda a, b: False  # a file system without RENAME_EXCHANGE
real = os.rename
def rename_then_die(a, b):
    real(a, b)
    os.kill(os.getpid(), signal.SIGKILL)  # killed between the swap's renames, if it has two
os.rename = rename_then_die
with output.staged(Path(sys.argv[1])) as stage:
    (stage / "report.md").write_text("new")
"""


def swap_killed(folder, how: str) -> int:
    return subprocess.run([sys.executable, "-c", SWAP, str(folder), how], env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=60).returncode


@pytest.fixture
def old_report(tmp_path):
    folder = tmp_path / "report.out"
    folder.mkdir()
    (folder / "report.md").write_text("old")
    return folder


def test_a_report_killed_mid_swap_leaves_the_old_or_the_new_report(old_report):
    swap_killed(old_report, "exchange")
    assert (old_report / "report.md").read_text() in ("old", "new")
    leftovers = [p.name for p in old_report.parent.iterdir() if p.name.startswith(".report.out.old-")]
    assert leftovers == []


def test_where_the_swap_takes_two_renames_the_next_report_puts_the_old_one_back(old_report):
    assert swap_killed(old_report, "two renames") == -9
    assert not old_report.exists()  # what the kill left: the old report aside
    with output.staged(old_report) as stage:  # the next report: the old folder is back before it starts
        assert (old_report / "report.md").read_text() == "old"
        (stage / "report.md").write_text("next")
    assert (old_report / "report.md").read_text() == "next"
    assert not list(old_report.parent.glob(".report.out.old-*"))
    assert not list(old_report.parent.glob(".report.out.building-*"))  # the killed one's stage is cleared too


def test_the_exchange_is_used_where_the_kernel_has_it(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    if not output._exchange(a, b):
        pytest.skip("renameat2 RENAME_EXCHANGE is not available on this kernel or file system")
    assert (b / "x").read_text() == "a" and not (a / "x").exists()


BUILD_THEN_DIE = """
import os, signal, sys
from pathlib import Path
from fashion_lab.report import output
with output.staged(Path(sys.argv[1])) as stage:
    (stage / "report.md").write_text("half")
    os.kill(os.getpid(), signal.SIGKILL)  # killed while building: its stage is never cleaned up by itself
"""


def test_the_next_report_clears_what_a_report_killed_while_building_left(old_report):
    killed = subprocess.run([sys.executable, "-c", BUILD_THEN_DIE, str(old_report)], timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -9
    assert len(list(old_report.parent.glob(".report.out.building-*"))) == 1  # what kill -9 left
    live = old_report.parent / f".report.out.building-{os.getpid()}-x"  # a live report building: not touched
    live.mkdir()
    with output.staged(old_report) as stage:
        (stage / "report.md").write_text("next")
    assert (old_report / "report.md").read_text() == "next"
    assert [p.name for p in old_report.parent.glob(".report.out.building-*")] == [live.name]
