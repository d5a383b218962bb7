"""Images stored as class folders (`<split>/<class>/<file>`), in a folder tree or a tar archive.

Serves CINIC-10 (PNG class folders in the official tar.gz), the CIFAR-10 JPEG copy (whose original
record order is restored from its label file) and users' own image folders. Decoded arrays are
cached (see cache.py): decoding 60,000 JPEGs takes about 11 s on one core.
"""

from __future__ import annotations

import io
import re
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from miakit.data.cache import cached_arrays
from miakit.data.pool import Pool
from miakit.data.sources import SOURCES
from miakit.data.verify import checked_labels, checked_md5, dataset_folder
from miakit.errors import MiakitError

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp")
_FORMAT_VERSION = "1"

#: split → class folder name → [(file name, file bytes)]
ClassFiles = dict[str, dict[str, list[tuple[str, bytes]]]]


def iter_files(source: Path) -> Iterator[tuple[tuple[str, ...], bytes]]:
    """(path parts, bytes) of every regular file under a folder, or in a tar archive."""
    if source.is_dir():
        for path in sorted(source.rglob("*")):
            if path.is_file():
                yield path.relative_to(source).parts, path.read_bytes()
        return
    try:
        with tarfile.open(source, "r:*") as archive:
            for member in archive:
                if member.isfile():
                    yield tuple(member.name.split("/")), archive.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise MiakitError(f"{source}: truncated or corrupt archive ({exc})") from exc


def class_files(source: Path, splits: tuple[str, ...]) -> ClassFiles:
    """Image files at `<split>/<class>/<file>` (any prefix before); split "" means `<class>/<file>`."""
    found: ClassFiles = {split: {} for split in splits}
    for parts, data in iter_files(source):
        split = parts[-3] if len(parts) >= 3 else ""
        if len(parts) >= 2 and split in found and parts[-1].lower().endswith(IMAGE_SUFFIXES):
            found[split].setdefault(parts[-2], []).append((parts[-1], data))
    return found


def natural_key(name: str) -> list[int | str]:
    """Sort '2.jpg' before '10.jpg': digit runs compare as numbers."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def decode(data: bytes, mode: str, size: tuple[int, int] | None, where: str) -> np.ndarray:
    """uint8 [H, W, C] in `mode` ("RGB" or "L"); resized to `size` (W, H) when given."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = image.convert(mode)
            if size is not None and image.size != size:
                image = image.resize(size, Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MiakitError(f"{where}: not a readable image ({exc})") from exc
    return array if array.ndim == 3 else array[..., None]


def stack_images(images: list[np.ndarray], where: str) -> np.ndarray:
    if not images:
        raise MiakitError(f"{where}: no images found")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise MiakitError(
            f"{where}: images of different sizes {sorted(shapes)[:3]}; resize them to one size"
        )
    return np.stack(images)


def check_classes(files: dict[str, list], expected: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(files) - set(expected))
    absent = sorted(set(expected) - set(files))
    if unknown or absent:
        raise MiakitError(
            f"{where}: expected the class folders {', '.join(expected)}; "
            f"unexpected: {unknown or 'none'}, missing: {absent or 'none'}"
        )


def decode_classes(
    files: dict[str, list[tuple[str, bytes]]], classes: tuple[str, ...], where: str
) -> tuple[np.ndarray, np.ndarray]:
    """RGB images of each class in turn, in natural file-name order, and their labels."""
    images, labels = [], []
    for label, name in enumerate(classes):
        for file_name, data in sorted(files.get(name, []), key=lambda f: natural_key(f[0])):
            images.append(decode(data, "RGB", None, f"{where}:{name}/{file_name}"))
            labels.append(label)
    return stack_images(images, where), np.array(labels, dtype=np.int64)


def load_cinic10(data_dir: Path) -> Pool:
    """CINIC-10: the pool is its 90,000-image train split, its test split is kept; valid unused."""
    info = SOURCES["cinic10"]
    path = dataset_folder(info, data_dir) / info.files[0].name
    digest = checked_md5(path, info.files[0], info)

    def build() -> dict[str, np.ndarray]:
        found = class_files(path, ("train", "test"))
        arrays = {}
        for split, prefix in (("train", "x"), ("test", "x_test")):
            check_classes(found[split], CIFAR10_CLASSES, f"{path}:{split}")
            x, y = decode_classes(found[split], CIFAR10_CLASSES, f"{path}:{split}")
            arrays[prefix], arrays["y" + prefix[1:]] = x, y
        return arrays

    arrays = cached_arrays(info.name, [_FORMAT_VERSION, digest], build)
    return info.pool(**arrays, class_names=CIFAR10_CLASSES)


def restore_order(
    files: dict[str, list[tuple[str, bytes]]], labels: np.ndarray, where: str
) -> np.ndarray:
    """Decode class folders into the original record order: the k-th file of class c (in file
    number order) is the k-th record whose label is c."""
    check_classes(files, CIFAR10_CLASSES, where)
    images = np.zeros((len(labels), 32, 32, 3), np.uint8)
    for label, name in enumerate(CIFAR10_CLASSES):
        positions = np.flatnonzero(labels == label)
        entries = sorted(files[name], key=lambda f: natural_key(f[0]))
        if len(entries) != len(positions):
            raise MiakitError(
                f"{where}:{name}: {len(entries)} images but the label file has "
                f"{len(positions)} records of this class"
            )
        for position, (file_name, data) in zip(positions, entries, strict=True):
            image = decode(data, "RGB", None, f"{where}:{name}/{file_name}")
            if image.shape != (32, 32, 3):
                raise MiakitError(f"{where}:{name}/{file_name}: not a 32×32 image")
            images[position] = image
    return images


def load_cifar10_jpeg(data_dir: Path) -> Pool:
    """The lossy JPEG copy of CIFAR-10, in the original CIFAR-10 record order."""
    info = SOURCES["cifar10-jpeg"]
    folder = dataset_folder(info, data_dir)
    archive, label_file = (folder / f.name for f in info.files)
    digests = [checked_md5(folder / f.name, f, info) for f in info.files]

    def build() -> dict[str, np.ndarray]:
        try:
            with np.load(label_file, allow_pickle=False) as stored:
                labels = {
                    split: checked_labels(stored[f"{split}_labels"], 10, f"{label_file}:{split}")
                    for split in ("train", "test")
                }
        except (KeyError, ValueError, OSError) as exc:
            raise MiakitError(
                f"{label_file}: expected train_labels and test_labels ({exc})"
            ) from exc
        found = class_files(archive, ("train", "test"))
        return {
            "x": restore_order(found["train"], labels["train"], f"{archive}:train"),
            "y": labels["train"],
            "x_test": restore_order(found["test"], labels["test"], f"{archive}:test"),
            "y_test": labels["test"],
        }

    arrays = cached_arrays(info.name, [_FORMAT_VERSION, *digests], build)
    return info.pool(**arrays, class_names=CIFAR10_CLASSES)
