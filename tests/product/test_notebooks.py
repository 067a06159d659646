"""The notebooks execute top to bottom (nbclient) against stores built by the tests."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, cli_env

NOTEBOOKS = REPO / "notebooks"


def _execute(name: str, tmp_path: Path, monkeypatch, **env: str) -> nbformat.NotebookNode:
    for key, value in cli_env(**env).items():  # the kernel inherits os.environ: this worktree's code first
        monkeypatch.setenv(key, value)
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
                   ).execute()
    return notebook


def _text(notebook) -> str:
    return "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)


@pytest.mark.parametrize("name", ["01_walkthrough.ipynb", "02_compare_sweep.ipynb"])
def test_notebooks_are_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in notebook.cells if c.cell_type == "code")


@pytest.mark.slow
def test_walkthrough_trains_and_reads_its_record(tmp_path, monkeypatch, store):
    notebook = _execute("01_walkthrough.ipynb", tmp_path, monkeypatch, FASHION_LAB_NOTEBOOK_DATA="synthetic",
                        FASHION_LAB_NOTEBOOK_EPOCHS="1", FASHION_LAB_TRACKING_URI=store)
    text = _text(notebook)
    assert "data=synthetic" in text and "test_accuracy=" in text and "FINISHED" in text
    assert any(o.get("data", {}).get("image/png") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


def test_compare_notebook_loads_the_sweep(tmp_path, monkeypatch, sweep_store):
    uri, pid = sweep_store
    notebook = _execute("02_compare_sweep.ipynb", tmp_path, monkeypatch, FASHION_LAB_TRACKING_URI=uri)
    text = _text(notebook)
    assert f"sweep tiny_grid ({pid}): 8 runs" in text and "model.conv_dropout" in text
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.get("data", {}).get("image/png")]
    assert len(images) >= 2
