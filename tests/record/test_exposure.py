"""Nothing exposed, nothing leaked (issue 23, item 5): the UI stays on loopback unless asked, no
password reaches the store, and no store value becomes a spreadsheet formula."""

from __future__ import annotations

import pandas as pd
import pytest

from conftest import compose

SECRET = "hunter2"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2", "[::1]"])
def test_loopback_hosts_are_allowed(host):
    from fashion_lab.preflight import validate

    validate(compose([f"ui.host='{host}'"]))


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::", "192.168.1.5", "example.org"])
def test_other_hosts_need_allow_remote(host):
    from fashion_lab.config import ConfigError
    from fashion_lab.preflight import validate

    with pytest.raises(ConfigError, match=r"ui\.host=.*ui\.allow_remote=true"):
        validate(compose([f"ui.host='{host}'"]))
    validate(compose([f"ui.host='{host}'", "ui.allow_remote=true"]))


def test_userinfo_is_masked_in_any_text():
    from fashion_lab.config import mask_userinfo

    text = f"fashion-lab train tracking.uri=postgresql://alice:{SECRET}@db:5432/mlflow data=small"
    assert mask_userinfo(text) == "fashion-lab train tracking.uri=postgresql://***@db:5432/mlflow data=small"
    for kept in ("sqlite:///runs/m.db", "file:///a@b", "http://host/path@x", "plain"):
        assert mask_userinfo(kept) == kept
    assert mask_userinfo(3) == 3


def test_no_password_reaches_the_store_params_tags_or_config_artifact(run_cli, tmp_path):
    """A real run whose config holds a URI with a password (a spool folder named like a server URI, which
    lands in params, the recorded command tag and config.yaml): the store's bytes never hold the password."""
    db = tmp_path / "m.db"
    uri = f"postgresql://alice:{SECRET}@db.example:5432/mlflow"
    run_cli("train", "data=synthetic", "trainer.epochs=1", "data.synthetic_train=300", "data.synthetic_test=100",
            "data.val_samples=60", f"tracking.uri=sqlite:///{db}", f"tracking.offline_dir={uri}", check=True)
    stored = [db, *(p for p in (tmp_path / "mlartifacts").rglob("*") if p.is_file())]
    assert any(p.name == "config.yaml" for p in stored)
    leaked = [str(p) for p in stored if SECRET.encode() in p.read_bytes()]
    assert not leaked, leaked
    assert b"postgresql://***@db.example:5432/mlflow" in db.read_bytes()  # masked, not dropped


def test_csv_cells_never_start_a_formula():
    from fashion_lab.record.untrusted import csv_safe

    frame = pd.DataFrame({"run_name": ["=HYPERLINK(\"http://x\")", "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "ok"],
                          "=bad column": [-1.5, 2.0, 3.0, 4.0, 5.0]})
    safe = csv_safe(frame)
    assert list(safe["run_name"]) == ["'=HYPERLINK(\"http://x\")", "'+cmd|' /C calc'!A0", "'@SUM(1)", "'-2+3", "ok"]
    assert list(safe.columns) == ["run_name", "'=bad column"]
    assert list(safe["'=bad column"]) == [-1.5, 2.0, 3.0, 4.0, 5.0]  # numbers stay numbers
    assert list(frame["run_name"])[0].startswith("=")  # the frame itself is untouched
