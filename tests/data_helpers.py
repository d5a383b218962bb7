"""Helpers for the data tests: small files in official formats, and sources pointing at them."""

from __future__ import annotations

import hashlib
import io
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from miakit.data.sources import SOURCES, DatasetInfo, RemoteFile

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def use_files(monkeypatch: pytest.MonkeyPatch, name: str, folder: Path) -> DatasetInfo:
    """Point data set `name` at the files now in `folder`: their md5s become the published ones,
    so the loader's checksum check passes on test files and fails once a file changes."""
    info = SOURCES[name]
    files = tuple(RemoteFile(f.name, f.urls, md5_of(folder / f.name)) for f in info.files)
    patched = replace(info, files=files)
    monkeypatch.setitem(SOURCES, name, patched)
    return patched


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    return path


def image_bytes(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, format=fmt)
    return buffer.getvalue()


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_byte(path: Path, position: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))
