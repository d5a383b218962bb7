"""GTSRB from the official final training and test archives (zip files of PPM images).

Training images sit in `GTSRB/Final_Training/Images/<class, 5 digits>/<track>_<image>.ppm`; test
images in `GTSRB/Final_Test/Images/<number>.ppm`, with their classes in `GT-final_test.csv`
(semicolon-separated, column ClassId) from the ground-truth archive. The images vary in size
(15 to 250 pixels a side): each whole image is resized to 32×32 (bilinear, no ROI crop), as the
MIA literature does. The pool is the 39,209 training images; the 12,630 test images are kept.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np

from miakit.data.cache import cached_arrays
from miakit.data.image_folder import decode, natural_key
from miakit.data.pool import Pool
from miakit.data.sources import SOURCES
from miakit.data.verify import checked_labels, checked_md5, dataset_folder
from miakit.errors import MiakitError

_SIZE = (32, 32)
_FORMAT_VERSION = "1"


def _read_zip(path: Path) -> dict[str, bytes]:
    """Every file in the archive by its path; a CRC error means a corrupt archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
        raise MiakitError(f"{path}: truncated or corrupt zip archive ({exc})") from exc


def _training(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entries = []
    for name, data in _read_zip(path).items():
        parts = name.split("/")
        if name.lower().endswith(".ppm") and len(parts) >= 2 and parts[-2].isdigit():
            entries.append((int(parts[-2]), natural_key(parts[-1]), name, data))
    entries.sort(key=lambda e: (e[0], e[1]))
    images = [decode(data, "RGB", _SIZE, f"{path}:{name}") for _, _, name, data in entries]
    labels = np.array([e[0] for e in entries], dtype=np.int64)
    labels = checked_labels(labels, SOURCES["gtsrb"].num_classes, str(path))
    return np.stack(images), labels


def _test(images_path: Path, truth_path: Path) -> tuple[np.ndarray, np.ndarray]:
    by_name = {name.split("/")[-1]: data for name, data in _read_zip(images_path).items()}
    tables = [d for n, d in _read_zip(truth_path).items() if n.lower().endswith(".csv")]
    if len(tables) != 1:
        raise MiakitError(f"{truth_path}: expected one CSV of test classes, found {len(tables)}")
    rows = list(csv.DictReader(io.StringIO(tables[0].decode("latin-1")), delimiter=";"))
    if not rows or "Filename" not in rows[0] or "ClassId" not in rows[0]:
        raise MiakitError(f"{truth_path}: the CSV needs the columns Filename and ClassId")
    missing = [r["Filename"] for r in rows if r["Filename"] not in by_name]
    if missing:
        raise MiakitError(f"{images_path}: lacks {len(missing)} test images, e.g. {missing[0]}")
    images = [decode(by_name[r["Filename"]], "RGB", _SIZE, r["Filename"]) for r in rows]
    try:
        labels = np.array([int(r["ClassId"]) for r in rows], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise MiakitError(f"{truth_path}: ClassId must be an integer ({exc})") from exc
    return np.stack(images), checked_labels(labels, SOURCES["gtsrb"].num_classes, str(truth_path))


def load_gtsrb(data_dir: Path) -> Pool:
    info = SOURCES["gtsrb"]
    folder = dataset_folder(info, data_dir)
    train, test, truth = (folder / f.name for f in info.files)
    digests = [checked_md5(folder / f.name, f, info) for f in info.files]

    def build() -> dict[str, np.ndarray]:
        x, y = _training(train)
        x_test, y_test = _test(test, truth)
        return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}

    return info.pool(**cached_arrays(info.name, [_FORMAT_VERSION, *digests], build))
