"""MNIST-style gzipped IDX files, written here byte by byte from the format's definition."""

from __future__ import annotations

import gzip
import hashlib
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from miakit.data.idx import load_fashion_mnist, load_mnist
from miakit.data.sources import SOURCES, RemoteFile
from miakit.errors import MiakitError

from .data_helpers import flip_byte, truncate, use_files

RNG = np.random.default_rng(3)
TRAIN = RNG.integers(0, 256, (12, 28, 28), dtype=np.uint8)
TRAIN_LABELS = np.array([5, 0, 4, 1, 9, 2, 1, 3, 1, 4, 3, 5], dtype=np.uint8)
TEST = RNG.integers(0, 256, (4, 28, 28), dtype=np.uint8)
TEST_LABELS = np.array([7, 2, 1, 0], dtype=np.uint8)


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.tobytes()


def write_mnist(folder: Path, **override: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "train-images-idx3-ubyte.gz": idx_bytes(TRAIN),
        "train-labels-idx1-ubyte.gz": idx_bytes(TRAIN_LABELS),
        "t10k-images-idx3-ubyte.gz": idx_bytes(TEST),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(TEST_LABELS),
    }
    for name, content in contents.items():
        data = override.get(name.split("-")[0] + "_" + name.split("-")[1], content)
        (folder / name).write_bytes(gzip.compress(data, mtime=0))
    return folder


def test_mnist_loads_images_and_labels_as_written(tmp_path, monkeypatch):
    use_files(monkeypatch, "mnist", write_mnist(tmp_path / "mnist"))
    pool = load_mnist(tmp_path)
    assert pool.x.shape == (12, 28, 28, 1) and pool.x.dtype == np.uint8
    assert np.array_equal(pool.x[..., 0], TRAIN)
    assert pool.y.tolist() == TRAIN_LABELS.tolist() and pool.y.dtype == np.int64
    assert np.array_equal(pool.x_test[..., 0], TEST) and pool.y_test.tolist() == [7, 2, 1, 0]
    assert pool.mean == (0.1307,) and pool.std == (0.3081,)


def test_fashion_mnist_reads_its_own_folder(tmp_path, monkeypatch):
    use_files(monkeypatch, "fashion-mnist", write_mnist(tmp_path / "fashion_mnist"))
    pool = load_fashion_mnist(tmp_path)
    assert pool.name == "fashion-mnist" and pool.mean == (0.2860,)


def test_a_recompressed_file_passes_on_its_decompressed_checksum(tmp_path, monkeypatch):
    folder = write_mnist(tmp_path / "mnist")
    info = use_files(monkeypatch, "mnist", folder)
    name = "train-images-idx3-ubyte.gz"
    (folder / name).write_bytes(gzip.compress(idx_bytes(TRAIN), compresslevel=1, mtime=7))
    content = hashlib.md5(idx_bytes(TRAIN)).hexdigest()
    files = tuple(replace(f, content_md5=content) if f.name == name else f for f in info.files)
    monkeypatch.setitem(SOURCES, "mnist", replace(info, files=files))
    assert np.array_equal(load_mnist(tmp_path).x[..., 0], TRAIN)


def test_changed_content_fails_the_checksum(tmp_path, monkeypatch):
    folder = write_mnist(tmp_path / "mnist")
    use_files(monkeypatch, "mnist", folder)
    altered = TRAIN.copy()
    altered[0, 0, 0] ^= 1
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(altered)))
    with pytest.raises(MiakitError, match=r"checksum mismatch.*datasets fetch mnist"):
        load_mnist(tmp_path)


def test_truncated_gzip_is_reported(tmp_path, monkeypatch):
    folder = write_mnist(tmp_path / "mnist")
    use_files(monkeypatch, "mnist", folder)
    truncate(folder / "train-images-idx3-ubyte.gz")
    with pytest.raises(MiakitError, match="not a complete gzip file"):
        load_mnist(tmp_path)


def test_corrupt_gzip_is_reported(tmp_path, monkeypatch):
    folder = write_mnist(tmp_path / "mnist")
    use_files(monkeypatch, "mnist", folder)
    flip_byte(folder / "t10k-labels-idx1-ubyte.gz", -6)  # inside the CRC/size trailer
    with pytest.raises(MiakitError, match=r"t10k-labels.*gzip"):
        load_mnist(tmp_path)


def _unchecked(monkeypatch) -> None:
    """No published checksums: the IDX checks themselves must catch what follows."""
    info = SOURCES["mnist"]
    files = tuple(RemoteFile(f.name, f.urls) for f in info.files)
    monkeypatch.setitem(SOURCES, "mnist", replace(info, files=files))


def test_idx_shorter_than_its_header_promises_is_truncated(tmp_path, monkeypatch):
    _unchecked(monkeypatch)
    write_mnist(tmp_path / "mnist", train_images=idx_bytes(TRAIN)[:-100])
    with pytest.raises(MiakitError, match="truncated"):
        load_mnist(tmp_path)


def test_label_out_of_range_is_reported(tmp_path, monkeypatch):
    _unchecked(monkeypatch)
    bad = TRAIN_LABELS.copy()
    bad[3] = 10
    write_mnist(tmp_path / "mnist", train_labels=idx_bytes(bad))
    with pytest.raises(MiakitError, match=r"labels must lie in \[0, 9\], found \[0, 10\]"):
        load_mnist(tmp_path)


def test_image_and_label_counts_must_agree(tmp_path, monkeypatch):
    _unchecked(monkeypatch)
    write_mnist(tmp_path / "mnist", train_labels=idx_bytes(TRAIN_LABELS[:-1]))
    with pytest.raises(MiakitError, match=r"shape \[11, 28, 28\], got \[12, 28, 28\]"):
        load_mnist(tmp_path)


def test_wrong_image_size_is_reported(tmp_path, monkeypatch):
    _unchecked(monkeypatch)
    write_mnist(tmp_path / "mnist", train_images=idx_bytes(TRAIN[:, :27, :]))
    with pytest.raises(MiakitError, match="expected an array of shape"):
        load_mnist(tmp_path)


def test_bad_header_is_reported(tmp_path, monkeypatch):
    _unchecked(monkeypatch)
    write_mnist(tmp_path / "mnist", train_labels=b"\x00\x00\x0d\x01" + b"\x00" * 8)
    with pytest.raises(MiakitError, match="not an IDX file"):
        load_mnist(tmp_path)


def test_missing_files_are_listed_with_their_urls(tmp_path):
    (tmp_path / "mnist").mkdir()
    with pytest.raises(MiakitError) as caught:
        load_mnist(tmp_path)
    message = str(caught.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and str(tmp_path / "mnist") in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message
