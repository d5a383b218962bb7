"""Smoke tests of the staged-audit benchmarks (bench/stages.py, text_audit.py, hf_audit.py) at
toy sizes: each runs every stage and prints its timings and AUCs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"# bench/{script}  " in done.stdout, done.stdout
    return done.stdout


def test_stages_times_every_stage_of_the_digits_audit() -> None:
    out = _run("stages.py", "--set", "split.num_models=4", "--set", "train.epochs=1")
    for stage in ("plan", "train", "query", "attack", "evaluate", "report", "total"):
        assert f"{stage:>9}: " in out
    assert "mean AUC: {'loss'" in out


def test_text_audit_times_each_attack_of_the_text_config() -> None:
    pytest.importorskip("transformers")
    out = _run("text_audit.py", "--records", "40", "--set", "split.num_models=4")
    assert "40 records of" in out and "overrides ['split.num_models=4']" in out
    for stage in ("plan", "attack min-k", "attack rmia", "report"):
        assert f"{stage:>24}: " in out
    assert "mean AUC: {'lm-loss'" in out


def test_hf_audit_times_the_tiny_bert_classifier_audit() -> None:
    pytest.importorskip("transformers")
    out = _run("hf_audit.py", "--records", "40", "--set", "split.num_models=4")
    assert "config: configs/text_classifier.yaml (tiny BERT" in out
    assert "attack stage: " in out and "mean AUC: {" in out
