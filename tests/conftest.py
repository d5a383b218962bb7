"""Shared fixtures: a tiny, fast audit config."""

from __future__ import annotations

from pathlib import Path

import pytest

from miakit.config import AuditConfig, load_config

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture
def tiny_config() -> AuditConfig:
    """8 small MLPs on digits, a few epochs: an end-to-end audit in seconds."""
    return load_config(
        None,
        [
            "split.num_models=8",
            "model.hidden=[32]",
            "train.epochs=8",
            "train.lr=0.01",
            "attacks=[loss, lira-online, lira-offline]",
        ],
    )
