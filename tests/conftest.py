"""Shared fixtures: a tiny, fast audit config; one torch thread for small models; a copy of a
module's finished run; the decoded-data cache in a folder of the session's own."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from miakit.config import AuditConfig, load_config
from miakit.store import RunDir

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory):
    """Decoded data sets and tokenized records (`miakit.data.cache`) go to a folder of this
    session's, never the user's cache, for the tests and the processes they start."""
    before = os.environ.get("MIAKIT_CACHE")
    os.environ["MIAKIT_CACHE"] = str(tmp_path_factory.mktemp("decoded"))
    yield
    if before is None:
        os.environ.pop("MIAKIT_CACHE")
    else:
        os.environ["MIAKIT_CACHE"] = before


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


@pytest.fixture
def run_copy(finished, tmp_path):
    """(config, RunDir) of a copy of the requesting module's `finished` fixture's run (a
    (config, root) pair, audited once per module), for a test that changes or breaks it."""
    config, root = finished
    shutil.copytree(root, tmp_path / "run")
    return config, RunDir(tmp_path / "run")
