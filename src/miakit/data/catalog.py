"""What `miakit datasets list` and `miakit datasets fetch` show and do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from miakit.data.download import ensure_files
from miakit.data.registry import DATASETS, resolve_data_dir
from miakit.data.sources import SOURCES
from miakit.errors import MiakitError


@dataclass(frozen=True)
class DatasetStatus:
    """One row of the data set list. `present`: every file is in `folder` (not yet verified:
    loading verifies checksums). `size_bytes`: what the files take on disk now."""

    name: str
    title: str
    present: bool
    size_bytes: int
    folder: Path | None
    source: str
    records: int
    test_records: int
    num_classes: int
    shape: tuple[int, ...]


def list_datasets(data_dir: Path | None = None) -> list[DatasetStatus]:
    """Every registered data set, in registry order, with where its files are (or would go)."""
    root = resolve_data_dir(data_dir)
    rows = []
    for name in DATASETS:
        info = SOURCES[name]
        folder = root / info.folder
        files = [folder / f.name for f in info.files]
        present = [f for f in files if f.is_file()]
        url = next((f.urls[0] for f in info.files if f.urls), info.homepage)
        rows.append(
            DatasetStatus(
                name,
                info.title,
                len(present) == len(files),
                sum(f.stat().st_size for f in present),
                folder if info.files else None,
                url,
                info.records,
                info.test_records,
                info.num_classes,
                info.shape,
            )
        )
    return rows


def fetch(name: str, data_dir: Path | None = None, console: Console | None = None) -> Path:
    """Download the data set's missing files, verify them, and load it once to check it whole.

    Returns the data set's folder (unused for data sets shipped inside a package).
    """
    if name not in DATASETS:
        raise MiakitError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    root = resolve_data_dir(data_dir)
    folder = ensure_files(SOURCES[name], root, download=True, console=console)
    DATASETS[name](root)
    return folder
