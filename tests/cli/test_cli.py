"""The CLI stays snappy: help paths import neither TensorFlow nor MLflow (nor Optuna); unknown commands fail clearly."""

import subprocess
import sys

import pytest
from conftest import cli_env

PROBE = """
import sys
from fashion_lab.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
heavy = sorted(m for m in ("tensorflow", "keras", "mlflow", "optuna") if m in sys.modules)
print("HEAVY:", ",".join(heavy))
"""


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_imports_no_tensorflow_or_mlflow(argv, tmp_path):
    out = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                         cwd=tmp_path, env=cli_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY: \n" in out.stdout or out.stdout.rstrip().endswith("HEAVY:"), out.stdout[-300:]
    assert "train" in out.stdout


def test_top_level_help_lists_commands(run_cli):
    result = run_cli("--help", check=True)
    assert "usage: fashion-lab COMMAND" in result.stdout and "train" in result.stdout


def test_unknown_command_names_the_choices(run_cli):
    result = run_cli("trian")
    assert result.returncode == 2 and "'trian'" in result.stderr and "train" in result.stderr


def test_train_help_shows_groups_and_keys(run_cli):
    result = run_cli("train", "--help", check=True)
    assert "model: bn_before, conv_dropout, no_bn, tutorial_cnn, wide" in result.stdout
    assert "bn_placement: after" in result.stdout
