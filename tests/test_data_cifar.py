"""CIFAR python-version archives written here: pickled batches of 3,072-byte rows in a tar.gz."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from miakit.data.cifar import load_batch, load_cifar10, load_cifar100
from miakit.errors import MiakitError

from .data_helpers import truncate, use_files, write_tar

RNG = np.random.default_rng(5)
PER_BATCH = 3


def rows(images: np.ndarray) -> np.ndarray:
    """The official row layout: 1,024 red bytes, 1,024 green, 1,024 blue, each row-major."""
    out = np.empty((len(images), 3072), dtype=np.uint8)
    for i, image in enumerate(images):
        for channel in range(3):
            for r in range(32):
                start = channel * 1024 + r * 32
                out[i, start : start + 32] = image[r, :, channel]
    return out


def batch(images: np.ndarray, labels: list[int], key: bytes = b"labels") -> bytes:
    content = {b"batch_label": b"test", key: labels, b"data": rows(images), b"filenames": []}
    return pickle.dumps(content, protocol=2)


def cifar10_archive(folder: Path, labels: list[list[int]] | None = None, **swap: bytes) -> tuple:
    images = RNG.integers(0, 256, (6 * PER_BATCH, 32, 32, 3), dtype=np.uint8)
    labels = labels or [RNG.integers(0, 10, PER_BATCH).tolist() for _ in range(6)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    members = {
        f"cifar-10-batches-py/{name}": batch(images[k * PER_BATCH : (k + 1) * PER_BATCH], labels[k])
        for k, name in enumerate(names)
    }
    meta = {b"label_names": [f"class{c}".encode() for c in range(10)], b"num_cases_per_batch": 3}
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps(meta, protocol=2)
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    for name, data in swap.items():
        members[f"cifar-10-batches-py/{name}"] = data
    write_tar(folder / "cifar-10-python.tar.gz", members)
    return images, labels


def test_cifar10_pool_is_the_five_training_batches_in_order(tmp_path, monkeypatch):
    images, labels = cifar10_archive(tmp_path / "cifar10")
    use_files(monkeypatch, "cifar10", tmp_path / "cifar10")
    pool = load_cifar10(tmp_path)
    train = 5 * PER_BATCH
    assert pool.x.shape == (train, 32, 32, 3) and pool.x.dtype == np.uint8
    assert np.array_equal(pool.x, images[:train])
    assert pool.y.tolist() == [label for batch in labels[:5] for label in batch]
    assert np.array_equal(pool.x_test, images[train:])
    assert pool.y_test.tolist() == labels[5]
    assert pool.class_names == tuple(f"class{c}" for c in range(10))
    assert pool.mean == (0.4914, 0.4822, 0.4465) and pool.is_image


def test_pixel_layout_is_channel_planes_then_rows():
    image = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    image[0, 2, 5, 1] = 200  # green, row 2, column 5
    data = np.zeros((1, 3072), dtype=np.uint8)
    data[0, 1024 + 2 * 32 + 5] = 200
    parsed = load_batch(pickle.dumps({b"data": data, b"labels": [0]}, protocol=2), "x")
    assert np.array_equal(parsed["data"], rows(image))


def test_cifar100_uses_fine_labels(tmp_path, monkeypatch):
    images = RNG.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    meta = {b"fine_label_names": [f"f{c}".encode() for c in range(100)]}
    members = {
        "cifar-100-python/train": batch(images[:3], [99, 0, 42], b"fine_labels"),
        "cifar-100-python/test": batch(images[3:], [7, 8], b"fine_labels"),
        "cifar-100-python/meta": pickle.dumps(meta, protocol=2),
    }
    write_tar(tmp_path / "cifar100" / "cifar-100-python.tar.gz", members)
    use_files(monkeypatch, "cifar100", tmp_path / "cifar100")
    pool = load_cifar100(tmp_path)
    assert pool.y.tolist() == [99, 0, 42] and pool.y_test.tolist() == [7, 8]
    assert pool.num_classes == 100 and np.array_equal(pool.x, images[:3])


class _Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_with_other_globals_are_refused(tmp_path, monkeypatch, capsys):
    evil = pickle.dumps({b"data": _Exploit(), b"labels": [0]}, protocol=2)
    cifar10_archive(tmp_path / "cifar10", data_batch_2=evil)
    use_files(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(MiakitError, match=r"refusing to load global (__builtin__|builtins).print"):
        load_cifar10(tmp_path)
    assert "never run" not in capsys.readouterr().out


def test_checksum_mismatch_is_reported(tmp_path, monkeypatch):
    cifar10_archive(tmp_path / "cifar10")
    use_files(monkeypatch, "cifar10", tmp_path / "cifar10")
    cifar10_archive(tmp_path / "cifar10")  # new random content, old checksum
    with pytest.raises(MiakitError, match="checksum mismatch"):
        load_cifar10(tmp_path)


def test_truncated_archive_is_reported(tmp_path, monkeypatch):
    cifar10_archive(tmp_path / "cifar10")
    truncate(tmp_path / "cifar10" / "cifar-10-python.tar.gz")
    use_files(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(MiakitError, match="truncated or corrupt archive"):
        load_cifar10(tmp_path)


def test_missing_batch_is_reported(tmp_path, monkeypatch):
    images = RNG.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    members = {f"cifar-10-batches-py/data_batch_{i}": batch(images, [0, 1, 2]) for i in (1, 2)}
    write_tar(tmp_path / "cifar10" / "cifar-10-python.tar.gz", members)
    use_files(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(MiakitError, match=r"lacks batches.meta, data_batch_3"):
        load_cifar10(tmp_path)


def test_wrong_row_length_is_reported(tmp_path, monkeypatch):
    short = pickle.dumps({b"data": np.zeros((3, 3000), np.uint8), b"labels": [0, 1, 2]})
    cifar10_archive(tmp_path / "cifar10", data_batch_4=short)
    use_files(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(MiakitError, match=r"data_batch_4.*shape \[3, 3072\], got \[3, 3000\]"):
        load_cifar10(tmp_path)


def test_label_out_of_range_is_reported(tmp_path, monkeypatch):
    labels = [[0, 1, 2]] * 5 + [[3, 10, 4]]
    cifar10_archive(tmp_path / "cifar10", labels)
    use_files(monkeypatch, "cifar10", tmp_path / "cifar10")
    with pytest.raises(MiakitError, match=r"test_batch: labels must lie in \[0, 9\]"):
        load_cifar10(tmp_path)
