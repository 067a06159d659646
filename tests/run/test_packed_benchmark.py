"""benchmarks/packed_seeds.py runs (tiny: one repeat, 2 steps, K=1,2, float32): keeps it from rotting; never its speed."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_packed_seeds_benchmark_prints_the_cpu_and_a_ratio_per_k():
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "packed_seeds.py"), "--steps", "2",
                           "--repeats", "1", "--ks", "1", "2", "--precisions", "float32"],
                          capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("CPU: ")
    rows = re.findall(r"^float32 +(\d) +([\d.]+) +([\d.]+) +([\d.]+) +([\d.]+)$", proc.stdout, re.M)
    assert [int(k) for k, *_ in rows] == [1, 2]
    for k, single, packed, per_tower, ratio in rows:
        assert float(single) > 0 and float(packed) > 0
        assert float(per_tower) == pytest.approx(float(packed) / int(k), abs=1e-3)
        assert float(ratio) == pytest.approx(float(per_tower) / float(single), abs=0.01 + 0.01 * float(ratio))
