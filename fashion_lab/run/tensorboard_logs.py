"""TensorBoard as the tutorial uses it, ``keras.callbacks.TensorBoard(log_dir=..., write_graph=True)``, per run.

Keras writes the logs into a scratch folder during ``fit``; the run then carries them as its
``tensorboard/<run name>/`` artifact (``train/`` and ``validation/`` event files), so that
``tensorboard --logdir mlartifacts/<experiment id>`` shows every run of a sweep side by side,
each named by its run id and run name.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

ARTIFACT_DIR = "tensorboard"


class TensorBoardLogs:
    """The callback to pass to ``fit`` and the folder it writes; empty when TensorBoard is off."""

    def __init__(self, log_dir: Optional[Path], scratch: Optional[Path] = None):
        self.log_dir, self.scratch = log_dir, scratch
        self.callbacks: list = []
        if log_dir is not None:
            import keras

            self.callbacks.append(keras.callbacks.TensorBoard(log_dir=str(log_dir), write_graph=True))

    def copy_into(self, artifacts: Path) -> None:
        """Put the logs under ``artifacts/tensorboard/`` (the folder the run's artifacts are logged from)."""
        # Only the run's own scratch folder is copied, never a folder a name could point to.
        if self.scratch is not None and self.log_dir is not None and self.log_dir.exists():
            shutil.copytree(self.scratch, artifacts / ARTIFACT_DIR, dirs_exist_ok=True)


def _folder_name(run_name: str) -> str:
    """The run name as one path segment (TensorBoard lists runs by their folder): never empty, '.' or '..'.

    ``tracking.run_name=.`` made the log folder the scratch folder itself, and the copy took all of $TMPDIR."""
    name = re.sub(r"[^\w.,=+\-\[\]· ]+", "_", str(run_name)).strip()[:120]
    return "run" if not name.strip(".") else name


@contextlib.contextmanager
def tensorboard_logs(enabled: bool, run_name: str) -> Iterator[TensorBoardLogs]:
    """A TensorBoardLogs writing into a scratch folder that lives as long as the run."""
    if not enabled:
        yield TensorBoardLogs(None)
        return
    with tempfile.TemporaryDirectory(prefix="fashion-lab-tb-") as scratch:
        yield TensorBoardLogs(Path(scratch) / _folder_name(run_name), Path(scratch))
