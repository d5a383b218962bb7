"""Smoke test of bench/gpu.py, the device check's script: every phase at toy sizes on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SHARED_DATASETS

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_gpu_script_runs_every_phase_at_toy_sizes(tmp_path: Path) -> None:
    if not (SHARED_DATASETS / "cifar10_jpeg_lossy").is_dir():
        pytest.skip(f"the CIFAR-10 JPEG copy is not in {SHARED_DATASETS}")
    env = {**os.environ, "MIAKIT_DATA": str(SHARED_DATASETS), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py"), "--smoke", "--device", "cpu",
         "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout and "SKIPPED" not in done.stdout, done.stdout
    for phase in ("1. fast net", "2. loss-trace", "3. LiRA", "4. batched packing", "5. sweep"):
        assert f"## {phase}" in done.stdout
    for attack in ("lira-online ", "lira-offline-fixed", "lira-global"):
        assert attack in done.stdout
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "lira16_metrics.json", "lira16_metrics.csv", "lira16_report.html",
    }  # fmt: skip
