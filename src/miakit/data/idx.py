"""MNIST and Fashion-MNIST from their official gzipped IDX files.

IDX: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, each dimension
as a big-endian uint32, then the values in C order. The pool is the 60,000 training images
(uint8 [N, 28, 28, 1]); the 10,000 test images are kept for accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from miakit.data.pool import Pool
from miakit.data.sources import SOURCES, DatasetInfo
from miakit.data.verify import check_shape, checked_labels, dataset_folder, read_gzip_verified
from miakit.errors import MiakitError

_UBYTE = 0x08


def parse_idx(content: bytes, ndim: int, where: str) -> np.ndarray:
    """An IDX file's array of unsigned bytes, after checking its header against its length."""
    header = 4 + 4 * ndim
    if len(content) < header or content[:2] != b"\0\0" or content[2] != _UBYTE:
        raise MiakitError(f"{where}: not an IDX file of unsigned bytes (bad header)")
    if content[3] != ndim:
        raise MiakitError(f"{where}: expected {ndim} dimensions, the header says {content[3]}")
    dims = tuple(int(d) for d in np.frombuffer(content, ">u4", ndim, offset=4))
    expected = header + int(np.prod(dims))
    if len(content) != expected:
        raise MiakitError(
            f"{where}: the header promises {expected} bytes for shape {list(dims)}, the file has "
            f"{len(content)}: it is truncated or corrupt"
        )
    return np.frombuffer(content, np.uint8, offset=header).reshape(dims)


def _read(folder: Path, info: DatasetInfo, name: str, ndim: int) -> np.ndarray:
    spec = next(f for f in info.files if f.name == name)
    path = folder / name
    return parse_idx(read_gzip_verified(path, spec, info), ndim, str(path))


def _split(folder: Path, info: DatasetInfo, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images = _read(folder, info, f"{prefix}-images-idx3-ubyte.gz", 3)
    labels = _read(folder, info, f"{prefix}-labels-idx1-ubyte.gz", 1)
    where = str(folder / f"{prefix}-*-ubyte.gz")
    check_shape(images, (len(labels), *info.shape[:2]), where)
    return images[..., None].copy(), checked_labels(labels, info.num_classes, where)


def load_idx_pool(info: DatasetInfo, data_dir: Path) -> Pool:
    folder = dataset_folder(info, data_dir)
    x, y = _split(folder, info, "train")
    x_test, y_test = _split(folder, info, "t10k")
    return info.pool(x, y, x_test, y_test)


def load_mnist(data_dir: Path) -> Pool:
    return load_idx_pool(SOURCES["mnist"], data_dir)


def load_fashion_mnist(data_dir: Path) -> Pool:
    return load_idx_pool(SOURCES["fashion-mnist"], data_dir)
