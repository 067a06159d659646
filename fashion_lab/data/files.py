"""The four Fashion-MNIST file names and what a data folder holds (no numpy, no TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

# The four Fashion-MNIST files: data.dir is checked here, before TensorFlow or any run.
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


def missing_data_files(directory: Path) -> list[str]:
    return [name for name in FILES.values() if not (directory / name).is_file()]


def describe_data_dir(directory: Path) -> str:
    if not directory.is_dir():
        return "does not exist"
    missing = missing_data_files(directory)
    return "missing " + ", ".join(missing) if missing else "complete"


def check_dir(directory: Any) -> Optional[str]:
    """None when ``directory`` holds the four files; else what is wrong with it (for data.dir)."""
    path = Path(str(directory)).expanduser()
    state = describe_data_dir(path)
    return None if state == "complete" else f"{path} {state}"
