"""Checks every loader shares: files present, checksums right, labels in range, shapes as expected.

Each failure is one MiakitError that names the file, what was expected and how to fix it, so a
pool is either loaded whole from verified files or not at all.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from miakit.data.sources import DatasetInfo, RemoteFile
from miakit.errors import MiakitError

_CHUNK = 1 << 20


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def refetch_hint(info: DatasetInfo) -> str:
    if any(f.urls for f in info.files):
        return f"delete it and run `miakit datasets fetch {info.name}` to download it again"
    return f"replace it with an intact copy ({info.homepage})"


def checked_md5(path: Path, spec: RemoteFile, info: DatasetInfo) -> str:
    """The file's md5, after checking it against the published one (when there is one)."""
    actual = md5_file(path)
    if spec.md5 is not None and actual != spec.md5:
        raise MiakitError(
            f"{path}: checksum mismatch (md5 {actual}, expected {spec.md5}): the file is "
            f"truncated or corrupt; {refetch_hint(info)}"
        )
    return actual


def read_gzip_verified(path: Path, spec: RemoteFile, info: DatasetInfo) -> bytes:
    """The decompressed bytes of a gzip file whose file or content md5 is the published one."""
    raw = path.read_bytes()
    try:
        content = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise MiakitError(
            f"{path}: not a complete gzip file ({exc}); {refetch_hint(info)}"
        ) from exc
    if spec.md5 is None or md5_bytes(raw) == spec.md5:
        return content
    actual = md5_bytes(content)
    if actual != spec.content_md5:
        raise MiakitError(
            f"{path}: checksum mismatch (md5 {md5_bytes(raw)}, expected {spec.md5}; decompressed "
            f"md5 {actual}, expected {spec.content_md5}); {refetch_hint(info)}"
        )
    return content


def dataset_folder(info: DatasetInfo, data_dir: Path) -> Path:
    """The data set's folder, after checking that every file it needs is there."""
    folder = Path(data_dir) / info.folder
    missing = [f for f in info.files if not (folder / f.name).is_file()]
    if missing:
        raise MiakitError(missing_message(info, folder, missing))
    return folder


def missing_message(info: DatasetInfo, folder: Path, missing: list[RemoteFile]) -> str:
    lines = [f"data set {info.name!r} ({info.title}) needs these files in {folder}:"]
    for f in missing:
        lines.append(f"  {f.name}  <- {f.urls[0] if f.urls else 'no public download'}")
    if any(f.urls for f in missing):
        how = (
            f"run `miakit datasets fetch {info.name}` on a machine with internet, or download "
            "them from these URLs by hand"
        )
    else:
        how = f"copy them from where you got this data set ({info.homepage})"
    lines.append(
        f"To fix: {how} and put them in {folder} (or point --data-dir / MIAKIT_DATA at a "
        f"folder that has a {info.folder}/ subfolder with them)."
    )
    return "\n".join(lines)


def checked_labels(labels: np.ndarray, num_classes: int, where: str, offset: int = 0) -> np.ndarray:
    """Labels as int64 in [0, num_classes), after subtracting `offset` (1 for 1-based files)."""
    if labels.size == 0:
        raise MiakitError(f"{where}: no records found")
    if labels.dtype.kind not in "iu":
        raise MiakitError(f"{where}: labels must be integers, got {labels.dtype}")
    low, high = int(labels.min()), int(labels.max())
    if low < offset or high >= num_classes + offset:
        raise MiakitError(
            f"{where}: labels must lie in [{offset}, {num_classes + offset - 1}], found "
            f"[{low}, {high}]; the file is not the expected data set or is corrupt"
        )
    return labels.astype(np.int64) - offset


def check_shape(array: np.ndarray, expected: tuple[int | None, ...], where: str) -> None:
    """`expected` lists each dimension, None where any size is fine."""
    if array.ndim != len(expected) or any(
        e is not None and a != e for a, e in zip(array.shape, expected, strict=True)
    ):
        shown = "[" + ", ".join("N" if e is None else str(e) for e in expected) + "]"
        raise MiakitError(
            f"{where}: expected an array of shape {shown}, got {list(array.shape)}; the file "
            "is not the expected data set or is corrupt"
        )
