"""Integration tests on the real benchmark files in ../shared/datasets (skipped where absent).

Expected values are published facts about each data set (record and class counts, checksums from
the folder's README, the first labels of the official files), not the loaders' own output.
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from collections import Counter

import numpy as np
import pytest

from miakit.data import load_pool
from miakit.data.catalog import list_datasets

from .data_helpers import SHARED_DATASETS


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIAKIT_CACHE", str(tmp_path / "cache"))


def needs(folder: str):
    return pytest.mark.skipif(
        not (SHARED_DATASETS / folder).is_dir(),
        reason=f"real data folder {SHARED_DATASETS / folder} is absent on this machine",
    )


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def gunzip_md5(path) -> str:
    return hashlib.md5(gzip.decompress(path.read_bytes())).hexdigest()


def load(name: str):
    return load_pool(name, SHARED_DATASETS, download=False)


@needs("mnist")
def test_mnist():
    assert gunzip_md5(SHARED_DATASETS / "mnist/train-images-idx3-ubyte.gz") == (
        "6bbc9ace898e44ae57da46a324031adb"
    )
    assert md5(SHARED_DATASETS / "mnist/t10k-images-idx3-ubyte.gz") == (
        "9fb629c4189551a2d022fa330f9573f3"
    )
    pool = load("mnist")
    assert pool.x.shape == (60_000, 28, 28, 1) and pool.x_test.shape == (10_000, 28, 28, 1)
    assert np.bincount(pool.y).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(pool.y_test).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert pool.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


@needs("fashion_mnist")
def test_fashion_mnist():
    expected = {
        "train-images-idx3-ubyte.gz": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte.gz": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte.gz": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte.gz": "15d484375f8d13e6eb1aabb0c3f46965",
    }
    for name, digest in expected.items():
        assert gunzip_md5(SHARED_DATASETS / "fashion_mnist" / name) == digest
    pool = load("fashion-mnist")
    assert np.bincount(pool.y).tolist() == [6000] * 10
    assert np.bincount(pool.y_test).tolist() == [1000] * 10
    assert pool.y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


@needs("adult")
def test_adult():
    assert md5(SHARED_DATASETS / "adult/adult.data") == "5d7c39d7b8804f071cdd1f2a7c460872"
    assert md5(SHARED_DATASETS / "adult/adult.test") == "35238206dfdf7f1fe215bbb874adecdc"
    pool = load("adult")
    # one-hot width from the raw file: distinct values of each categorical column of adult.data
    rows = [
        [v.strip() for v in line.split(",")]
        for line in (SHARED_DATASETS / "adult/adult.data").read_text().splitlines()
        if line.strip()
    ]
    categorical = [1, 3, 5, 6, 7, 8, 9, 13]
    width = 6 + sum(len({row[c] for row in rows}) for c in categorical)
    assert width == 108
    assert pool.x.shape == (32_561, width) and pool.x_test.shape == (16_281, width)
    assert int(pool.y.sum()) == 7841 and int(pool.y_test.sum()) == 3846  # >50K counts
    assert pool.num_classes == 2 and np.isfinite(pool.x).all()


@needs("location")
def test_location():
    assert md5(SHARED_DATASETS / "location/dataset_location.tgz") == (
        "66851c781a61f51b35ead292b5f303e3"
    )
    pool = load("location")
    assert pool.x.shape == (5010, 446) and pool.num_classes == 30
    assert len(np.unique(pool.y)) == 30
    assert set(np.unique(pool.x)) == {0.0, 1.0}


JPEG = SHARED_DATASETS / "cifar10_jpeg_lossy"


@needs("cifar10_jpeg_lossy")
def test_cifar10_jpeg_files_checksums_and_class_counts():
    assert md5(JPEG / "cifar10-images-jpg-q75.tar.gz") == "39eeb9170fa04bc0bc4643091ee1f95e"
    with np.load(JPEG / "cifar10_labels_original_order.npz") as labels:
        train, test = labels["train_labels"], labels["test_labels"]
    assert train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # CIFAR-10 data_batch_1
    assert test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # CIFAR-10 test_batch
    with tarfile.open(JPEG / "cifar10-images-jpg-q75.tar.gz") as archive:
        counts = Counter(tuple(m.name.split("/")[:2]) for m in archive if m.name.endswith(".jpg"))
    for label, name in enumerate(
        ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    ):
        assert counts["train", name] == 5000 == int((train == label).sum())
        assert counts["test", name] == 1000 == int((test == label).sum())


@pytest.mark.slow
@needs("cifar10_jpeg_lossy")
def test_cifar10_jpeg_full_load():
    pool = load("cifar10-jpeg")
    assert pool.x.shape == (50_000, 32, 32, 3) and pool.x_test.shape == (10_000, 32, 32, 3)
    assert pool.y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    # the published CIFAR-10 channel means; JPEG at q75 moves them by far less than 0.002
    means = pool.x.reshape(-1, 3).mean(axis=0) / 255
    assert np.allclose(means, [0.4914, 0.4822, 0.4465], atol=0.002)


def test_catalog_sees_the_shared_files():
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent on this machine")
    rows = {row.name: row for row in list_datasets(SHARED_DATASETS)}
    for name, folder in [
        ("mnist", "mnist"),
        ("adult", "adult"),
        ("cifar10-jpeg", "cifar10_jpeg_lossy"),
    ]:
        if (SHARED_DATASETS / folder).is_dir():
            assert rows[name].present and rows[name].size_bytes > 1_000_000
    assert not rows["cifar10"].present
