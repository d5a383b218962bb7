"""Audits end to end from the CLI on the user's own .npz and on the real files in
../shared/datasets (skipped, with the reason, where they are absent)."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from miakit.cli import app

from .conftest import SHARED_DATASETS

QUICK = [
    "--set",
    "split.num_models=4",
    "--set",
    "train.epochs=3",
    "--set",
    "attacks=[loss, lira-offline, attack-r]",
]


def audit(tmp_path, *args):
    result = CliRunner().invoke(app, ["audit", "--out", str(tmp_path / "run"), *QUICK, *args])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "run" / "metrics.csv")
    return table, json.loads((tmp_path / "run" / "pool.json").read_text())


def test_audit_on_a_user_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)).astype(np.float32)
    y = (x[:, 0] + 0.3 * rng.normal(size=400) > 0).astype(np.int64)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    table, pool = audit(
        tmp_path, "--set", "data.name=user", "--set", f"data.path={tmp_path / 'mine.npz'}"
    )
    assert pool["num_records"] == 400 and pool["num_classes"] == 2
    assert set(table.attack) == {"loss", "lira-offline", "attack-r"}


def test_audit_on_location(tmp_path):
    if not (SHARED_DATASETS / "location" / "dataset_location.tgz").is_file():
        pytest.skip(f"Location is not in {SHARED_DATASETS}")
    table, pool = audit(
        tmp_path,
        "--config",
        "configs/location.yaml",
        "--data-dir",
        str(SHARED_DATASETS),
        "--set",
        "data.subsample=600",
    )
    assert pool["name"] == "location" and pool["num_classes"] == 30
    assert pool["num_records"] == 600 and pool["input_shape"] == [446]
    assert (table.metric == "auc").sum() == 3


def test_audit_on_fashion_mnist(tmp_path):
    if not (SHARED_DATASETS / "fashion_mnist" / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST is not in {SHARED_DATASETS}")
    table, pool = audit(
        tmp_path,
        "--config",
        "configs/fashion_mnist.yaml",
        "--data-dir",
        str(SHARED_DATASETS),
        "--set",
        "data.subsample=600",
    )
    assert pool["name"] == "fashion-mnist" and pool["input_shape"] == [28, 28, 1]
    assert (table.metric == "auc").sum() == 3
    assert (tmp_path / "run" / "report.html").is_file()
