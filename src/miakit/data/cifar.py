"""CIFAR-10 and CIFAR-100 from the official "python version" archives, read in place.

The batches are Python pickles. Unpickling can run arbitrary code, so they are read with an
unpickler that only admits what a NumPy array needs (`_reconstruct`, `ndarray`, `dtype`) and
`_codecs.encode` (how protocol-2 pickles written by Python 3 store bytes); any other global stops
the load. Rows of 3,072 bytes (1,024 red, then green, then blue, row-major) become
uint8 [N, 32, 32, 3]. The pool is the 50,000 training images; the 10,000 test images are kept.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from miakit.data.pool import Pool
from miakit.data.sources import SOURCES, DatasetInfo
from miakit.data.verify import check_shape, checked_labels, checked_md5, dataset_folder
from miakit.errors import MiakitError

try:  # NumPy >= 2 moved the pickle helper; pickles name either module
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_batch(data: bytes, where: str) -> dict[str, Any]:
    """One pickled batch as a dict with str keys (the files are Python 2 pickles, bytes keys)."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise MiakitError(f"{where}: not a CIFAR batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise MiakitError(f"{where}: not a CIFAR batch (a {type(batch).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _field(batch: dict[str, Any], key: str, where: str) -> Any:
    if key not in batch:
        raise MiakitError(f"{where}: the batch has no {key!r} entry")
    return batch[key]


def _images_and_labels(
    batches: dict[str, dict[str, Any]],
    names: list[str],
    label_key: str,
    info: DatasetInfo,
    path: Path,
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for name in names:
        batch, where = batches[name], f"{path}:{name}"
        data = np.asarray(_field(batch, "data", where))
        labels.append(np.asarray(_field(batch, label_key, where)))
        check_shape(data, (len(labels[-1]), 3 * 32 * 32), where)
        if data.dtype != np.uint8:
            raise MiakitError(f"{where}: pixel rows must be uint8, got {data.dtype}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    y = checked_labels(np.concatenate(labels), info.num_classes, f"{path}:{', '.join(names)}")
    return np.ascontiguousarray(np.concatenate(images)), y


def _read_members(path: Path, wanted: set[str]) -> dict[str, bytes]:
    """The wanted members (by name after the archive's top folder) of a tar.gz archive."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                short = member.name.split("/", 1)[-1]
                if member.isfile() and short in wanted:
                    found[short] = archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise MiakitError(f"{path}: truncated or corrupt archive ({exc})") from exc
    missing = sorted(wanted - set(found))
    if missing:
        raise MiakitError(f"{path}: the archive lacks {', '.join(missing)}; is it the right file?")
    return found


def _load(
    info: DatasetInfo, data_dir: Path, train: list[str], test: str, meta: str, keys: tuple[str, str]
) -> Pool:
    label_key, names_key = keys
    folder = dataset_folder(info, data_dir)
    path = folder / info.files[0].name
    checked_md5(path, info.files[0], info)
    members = _read_members(path, {*train, test, meta})
    batches = {name: load_batch(data, f"{path}:{name}") for name, data in members.items()}
    x, y = _images_and_labels(batches, train, label_key, info, path)
    x_test, y_test = _images_and_labels(batches, [test], label_key, info, path)
    names = tuple(
        n.decode() if isinstance(n, bytes) else str(n)
        for n in _field(batches[meta], names_key, f"{path}:{meta}")
    )
    return info.pool(x, y, x_test, y_test, class_names=names)


def load_cifar10(data_dir: Path) -> Pool:
    train = [f"data_batch_{i}" for i in range(1, 6)]
    keys = ("labels", "label_names")
    return _load(SOURCES["cifar10"], data_dir, train, "test_batch", "batches.meta", keys)


def load_cifar100(data_dir: Path) -> Pool:
    keys = ("fine_labels", "fine_label_names")
    return _load(SOURCES["cifar100"], data_dir, ["train"], "test", "meta", keys)
