"""fashion-lab ui: the MLflow UI on the configured store, in its own process group; a browser sees the sweep."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import FASHION_LAB, SWEEP_KEYS, as_from_a_terminal, cli_env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ui(uri: str, port: int, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([FASHION_LAB, "ui", f"tracking.uri={uri}", f"ui.port={port}"],
                            cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=as_from_a_terminal)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ui exited {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def _group_alive(pgid: int) -> bool:
    """A live (non-zombie) process is still in the group; zombies only wait for a reaper."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C to the command's group (as a terminal would); it stops the server's own group."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _server_pgids(port: int) -> set[int]:
    """Process groups of processes whose command line mentions this port (the mlflow server and its workers)."""
    groups = set()
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"--port\0{port}\0".encode() in stat.read_bytes():
                groups.add(os.getpgid(int(stat.parent.name)))
        except (OSError, ProcessLookupError):
            pass
    return groups


@pytest.mark.slow  # the server takes 15-60 s to answer on a busy 2-core machine
def test_ui_starts_prints_address_and_ctrl_c_stops_every_process(tmp_path, store):
    import mlflow

    mlflow.MlflowClient(tracking_uri=store).search_experiments()  # creates the (empty) store
    port = _free_port()
    proc = _start_ui(store, port, tmp_path)
    try:
        started = time.perf_counter()
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        print(f"UI answered after {time.perf_counter() - started:.1f} s")
        groups = _server_pgids(port)
        assert groups and proc.pid not in groups  # the server runs in a group of its own
    finally:
        _stop(proc)
    first = proc.stdout.read().splitlines()[0]
    assert first.startswith(f"MLflow UI: http://127.0.0.1:{port}")
    time.sleep(1)
    assert not any(_group_alive(g) for g in groups), "mlflow server processes survived Ctrl-C"


def test_ui_on_missing_store_fails_clearly(tmp_path, run_cli):
    result = run_cli("ui", f"tracking.uri=sqlite:///{tmp_path}/nothing.db", timeout=60)
    assert result.returncode == 2 and "nothing.db" in result.stderr


@pytest.mark.slow
def test_browser_shows_the_sweep_parent_and_child_runs(sweep_store, tmp_path):
    from playwright.sync_api import sync_playwright

    import mlflow

    uri, pid = sweep_store
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fashion-lab")
    children = [r.info.run_name for r in client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`fashion_lab.sweep_id` = '{pid}'") if r.info.run_id != pid]
    assert len(children) == 8
    port = _free_port()
    proc = _start_ui(uri, port, tmp_path)
    shot = tmp_path / "mlflow-ui-sweep.png"
    view_shot = tmp_path / "mlflow-ui-sweep-view.png"
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs", timeout=120_000)
            page.get_by_text("tiny_grid", exact=True).first.wait_for(timeout=120_000)
            # Children are collapsed under the parent row: its run-name cell has the expand button.
            parent_cell = page.locator("[role='gridcell']", has=page.get_by_text("tiny_grid", exact=True))
            parent_cell.locator("button[data-component-id*='runnamecellrenderer']").first.click()
            for name in children:  # full names are in the DOM; the UI only cuts them visually
                page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
            body = page.inner_text("body")
            page.screenshot(path=str(shot), full_page=True)
            # The sweep's own view (printed at the sweep's end): swept params and key metrics as columns.
            page.goto(f"http://127.0.0.1:{port}/#/experiments/{experiment.experiment_id}/runs"
                      f"?viewStateShareKey={pid}", timeout=120_000)
            header = page.locator("[role='columnheader']", has_text="model.conv_dropout").first
            header.wait_for(timeout=120_000)
            columns = page.locator("[role='columnheader']").all_inner_texts()
            page.screenshot(path=str(view_shot), full_page=True)
            browser.close()
    finally:
        _stop(proc)
    if os.environ.get("FASHION_LAB_TEST_ARTIFACTS"):
        target = Path(os.environ["FASHION_LAB_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / shot.name)
        shutil.copy(view_shot, target / view_shot.name)
    assert "tiny_grid" in body
    shown = [name for name in children if name in body]
    assert len(shown) == len(children), (children, body[:2000])
    assert shot.stat().st_size > 10_000
    assert experiment.tags.get("mlflow.experimentKind") == "custom_model_development"  # model-training view
    text = " ".join(columns)
    for column in (*SWEEP_KEYS, "trainer.seed", "test_accuracy", "best_val_accuracy"):
        assert column in text, (column, columns)


@pytest.mark.slow
def test_a_fresh_browser_opens_the_printed_sweep_link_in_the_model_training_view(sweep_store, tmp_path):
    """A fresh Chromium profile (the UI's workflow switch starts on GenAI) opens the link a sweep prints:
    the model-training sidebar, no GenAI one, the sweep's swept params and accuracies as columns, and every
    point as a row without expanding the parent."""
    from playwright.sync_api import sync_playwright

    import mlflow

    from fashion_lab.record.tracking import sweep_view_url

    uri, pid = sweep_store
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("fashion-lab")
    children = [r.info.run_name for r in client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`fashion_lab.sweep_id` = '{pid}'") if r.info.run_id != pid]
    assert len(children) == 8
    for kind in (experiment.tags, client.get_experiment("0").tags):  # fashion-lab's and MLflow's Default
        assert kind.get("mlflow.experimentKind") == "custom_model_development"
    port = _free_port()
    proc = _start_ui(uri, port, tmp_path)
    shot = tmp_path / "mlflow-ui-fresh-profile-sweep-link.png"
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path="/usr/bin/chromium",
                viewport={"width": 1600, "height": 1000},
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                      "--disable-sync", "--no-first-run"])
            page = context.new_page()
            page.goto(sweep_view_url("127.0.0.1", port, experiment.experiment_id, pid), timeout=120_000)
            try:
                page.locator("[role='columnheader']", has_text="model.conv_dropout").first.wait_for(timeout=120_000)
                page.get_by_text("Model registry", exact=True).first.wait_for(timeout=60_000)
            finally:  # the picture of what the page showed, also when it never showed the columns
                page.screenshot(path=str(shot), full_page=True)
            body = page.inner_text("body")
            columns = " ".join(page.locator("[role='columnheader']").all_inner_texts())
            page.screenshot(path=str(shot), full_page=True)
            context.close()
    finally:
        _stop(proc)
    if os.environ.get("FASHION_LAB_TEST_ARTIFACTS"):
        target = Path(os.environ["FASHION_LAB_TEST_ARTIFACTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / shot.name)
    lines = set(body.splitlines())
    assert "Models" in lines and "Model registry" in lines  # the model-training sidebar
    assert not lines & {"Judges", "Sessions", "Evaluation runs", "Playground"}, body[:1500]  # the GenAI one
    assert "tiny_grid" in body
    for column in (*SWEEP_KEYS, "trainer.seed", "test_accuracy", "best_val_accuracy"):
        assert column in columns, (column, columns)
    # Every point is a row of its own, without a click to expand the parent (issue 19, item 3).
    assert all(name in body for name in children), (children, body[:2000])


@pytest.mark.slow  # the server takes 15-60 s to answer on a busy 2-core machine
def test_kill_9_of_ui_takes_its_server_and_workers_down(tmp_path, store):
    import mlflow

    mlflow.MlflowClient(tracking_uri=store).search_experiments()  # creates the (empty) store
    port = _free_port()
    proc = _start_ui(store, port, tmp_path)
    try:
        _wait_http(f"http://127.0.0.1:{port}/health", proc)
        groups = _server_pgids(port)
        assert groups
        os.kill(proc.pid, signal.SIGKILL)  # the command alone, as the OOM killer or kill -9 would
        proc.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(_group_alive(g) for g in groups):
            time.sleep(0.2)
        assert not any(_group_alive(g) for g in groups), "mlflow server processes survived kill -9 of ui"
        with socket.socket() as s:  # the port is free again (REUSEADDR: a TIME_WAIT is no listener)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        _stop(proc)
        for group in _server_pgids(port):  # never leave a server behind, whatever happened
            os.killpg(group, signal.SIGKILL)
