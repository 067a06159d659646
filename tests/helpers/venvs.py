"""Fresh virtual environments that see no checkout, for the tests that install fashion-lab as a user does.

A venv made here borrows the dependencies already installed for the suite (TensorFlow alone is
1.3 GB) through a *plain path entry* to the base site-packages. Python processes ``.pth`` files
only in site folders, not in folders named by another ``.pth``, so the base environment's own
install of fashion-lab (its ``__editable__`` path entry or import hook) never runs in the venv:
the only fashion-lab it can import is the one installed into it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Every site folder this interpreter imports from (the base's, and those it borrows when it is itself
# such a venv), never the checkout or the current folder.
BASE_SITES = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def make_venv(folder: Path, with_pip: bool = True) -> Path:
    """A new venv in ``folder`` that borrows the suite's dependencies; returns its ``bin`` folder."""
    args = [sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(folder)]
    subprocess.run(args, check=True, capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    site = Path(subprocess.run([str(folder / "bin" / "python"), "-c",
                                "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in BASE_SITES))
    return folder / "bin"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, no test-only sweep folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FASHION_LAB_SWEEPS_DIR")}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env
