"""Shared fixtures: a tiny, fast audit config; one torch thread for small models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

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


@pytest.fixture
def one_thread():
    """Small models train faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
