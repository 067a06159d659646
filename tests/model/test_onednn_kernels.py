"""The Python API computes with the kernels the command line uses, so an API run reproduces exactly via the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO

PROBE = """
import os, sys
from fashion_lab.model import network  # imports TensorFlow through tf_settings.quiet_import
print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"), "tensorflow" in sys.modules)
"""


def test_importing_the_network_turns_on_onednn_as_the_command_does():
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    env["PYTHONPATH"] = str(REPO)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True"]  # set before TensorFlow read it (AMD CPUs default to off)
    kept = subprocess.run([sys.executable, "-c", PROBE], env={**env, "TF_ENABLE_ONEDNN_OPTS": "0"},
                          capture_output=True, text=True, timeout=120)
    assert kept.stdout.split() == ["0", "True"]  # a user's own choice stands
