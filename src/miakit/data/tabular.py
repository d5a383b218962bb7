"""Purchase-100, Texas-100 and Location from the archives that accompany Shokri et al. (2017).

Each archive holds comma-separated integer rows, read in place from the .tgz:
- `dataset_purchase.tgz` → `dataset_purchase`: label (1..100), then 600 binary features;
- `dataset_texas.tgz` → `texas/100/feats` (6,169 binary features) and `texas/100/labels` (1..100);
- `dataset_location.tgz` → `bangkok`: label (1..30, quoted), then 446 binary features.

The pool is every record, as the literature draws its target and shadow sets from the whole file;
`data.subsample` picks a smaller pool (e.g. Shokri et al. trained targets on 10,000 records).
Labels become 0-based; features become float32. Parsing the large files takes a while, so the
arrays are cached by the archive's md5.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from miakit.data.cache import cached_arrays
from miakit.data.pool import Pool
from miakit.data.sources import SOURCES, DatasetInfo
from miakit.data.verify import check_shape, checked_labels, checked_md5, dataset_folder
from miakit.errors import MiakitError

_FORMAT_VERSION = "1"


def read_csv_members(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The named members of a tar archive, each parsed as a headerless CSV of small integers."""
    tables: dict[str, np.ndarray] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                name = member.name.removeprefix("./")
                if member.isfile() and name in names:
                    frame = pd.read_csv(
                        archive.extractfile(member), header=None, dtype=np.int16, engine="c"
                    )
                    tables[name] = frame.to_numpy()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise MiakitError(f"{path}: truncated or corrupt archive ({exc})") from exc
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise MiakitError(
            f"{path}: expected comma-separated integers with the same number of columns on "
            f"every row ({exc})"
        ) from exc
    absent = sorted(set(names) - set(tables))
    if absent:
        raise MiakitError(f"{path}: the archive lacks {', '.join(absent)}; is it the right file?")
    return tables


def _labelled_rows(info: DatasetInfo, path: Path, member: str) -> dict[str, np.ndarray]:
    table = read_csv_members(path, [member])[member]
    where = f"{path}:{member}"
    check_shape(table, (None, 1 + info.shape[0]), where)
    y = checked_labels(table[:, 0], info.num_classes, where, offset=1)
    return {"x": table[:, 1:].astype(np.float32), "y": y}


def _texas_rows(info: DatasetInfo, path: Path) -> dict[str, np.ndarray]:
    tables = read_csv_members(path, ["texas/100/feats", "texas/100/labels"])
    feats, labels = tables["texas/100/feats"], tables["texas/100/labels"]
    check_shape(feats, (None, info.shape[0]), f"{path}:texas/100/feats")
    check_shape(labels, (len(feats), 1), f"{path}:texas/100/labels")
    y = checked_labels(labels[:, 0], info.num_classes, f"{path}:texas/100/labels", offset=1)
    return {"x": feats.astype(np.float32), "y": y}


def _load(info: DatasetInfo, data_dir: Path, build) -> Pool:
    path = dataset_folder(info, data_dir) / info.files[0].name
    digest = checked_md5(path, info.files[0], info)
    arrays = cached_arrays(info.name, [_FORMAT_VERSION, digest], lambda: build(info, path))
    return info.pool(**arrays)


def load_purchase100(data_dir: Path) -> Pool:
    return _load(
        SOURCES["purchase100"], data_dir, lambda i, p: _labelled_rows(i, p, "dataset_purchase")
    )


def load_texas100(data_dir: Path) -> Pool:
    return _load(SOURCES["texas100"], data_dir, _texas_rows)


def load_location(data_dir: Path) -> Pool:
    return _load(SOURCES["location"], data_dir, lambda i, p: _labelled_rows(i, p, "bangkok"))
