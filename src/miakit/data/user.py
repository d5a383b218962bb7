"""The user's own data: an .npz file, a folder of class subfolders of images, or text records:
a file (.txt, .jsonl, .csv) or a folder saved by `datasets.Dataset.save_to_disk`
(`miakit.data.text`).

.npz: `x` and `y` (the pool), optionally `x_test` and `y_test`, optionally `num_classes`, and for
images optionally `mean` and `std` (per channel, 0..1 scale). `x` is either uint8 images
[N, H, W, C] (or [N, H, W]) or numeric features [N, D] (stored as float32). Labels are integers
from 0. The file is read with allow_pickle=False: object arrays are refused.

Folder: `<root>/<class>/<image>`, or `<root>/train/<class>/<image>` plus `<root>/test/<class>/...`
for a test split. Classes are the sorted subfolder names of the pool. All images must share one
size; they load as RGB, or as one channel when every image is grey.

User images have no published normalization constants, so they are normalized with the fixed
mean 0.5 and std 0.5 per channel (pixels map to [-1, 1]) unless the .npz gives its own.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from miakit.data.image_folder import class_files, decode_classes
from miakit.data.pool import Pool
from miakit.data.text import TEXT_SUFFIXES, is_saved_dataset, load_text
from miakit.data.verify import checked_labels
from miakit.errors import MiakitError


def load_user(path: Path) -> Pool:
    path = Path(path).expanduser()
    if path.is_dir() and is_saved_dataset(path):
        return load_text(path)
    if path.is_dir():
        return _from_folder(path)
    if path.is_file() and path.suffix == ".npz":
        return _from_npz(path)
    if path.is_file() and path.suffix in TEXT_SUFFIXES:
        return load_text(path)
    raise MiakitError(
        f"data.path: {path} is neither an .npz file nor a folder of class subfolders of images "
        "nor a file of text records (.txt, .jsonl, .csv) nor a saved datasets.Dataset folder"
    )


def _features(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == np.uint8 and x.ndim in (3, 4):
        images = x[..., None] if x.ndim == 3 else x
        if images.shape[-1] not in (1, 3):
            raise MiakitError(f"{where}: images need 1 or 3 channels last, got shape {x.shape}")
        return images
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise MiakitError(
            f"{where}: expected uint8 images [N, H, W, C] or numeric features [N, D], got "
            f"{x.dtype} {list(x.shape)}"
        )
    features = x.astype(np.float32)
    if not np.isfinite(features).all():
        raise MiakitError(f"{where}: features contain NaN or infinite values")
    return features


def _from_npz(path: Path) -> Pool:
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MiakitError(f"{path}: not a readable .npz without pickled objects ({exc})") from exc
    for required in ("x", "y"):
        if required not in arrays:
            raise MiakitError(f"{path}: needs arrays 'x' and 'y'; it has {sorted(arrays)}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise MiakitError(f"{path}: give both 'x_test' and 'y_test', or neither")
    x = _features(arrays["x"], f"{path}:x")
    labels = [arrays["y"]] + ([arrays["y_test"]] if "y_test" in arrays else [])
    for key, y in zip(("y", "y_test"), labels, strict=False):
        if y.dtype.kind not in "iu":
            raise MiakitError(
                f"{path}:{key}: labels must be integer class indices from 0, got {y.dtype} "
                "(map class names to 0, 1, … first)"
            )
    num_classes = (
        int(arrays["num_classes"])
        if "num_classes" in arrays
        else max(int(np.max(y, initial=0)) for y in labels) + 1
    )
    y = _labels(arrays["y"], len(x), num_classes, f"{path}:y")
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = _features(arrays["x_test"], f"{path}:x_test")
        if x_test.shape[1:] != x.shape[1:] or x_test.dtype != x.dtype:
            raise MiakitError(
                f"{path}: x_test records ({x_test.dtype} {list(x_test.shape[1:])}) must be like "
                f"x records ({x.dtype} {list(x.shape[1:])})"
            )
        y_test = _labels(arrays["y_test"], len(x_test), num_classes, f"{path}:y_test")
    mean, std = _normalization(arrays, x, path)
    return Pool(f"user:{path.name}", x, y, num_classes, x_test, y_test, mean, std)


def _labels(y: np.ndarray, count: int, num_classes: int, where: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != count:
        raise MiakitError(f"{where}: expected {count} labels [N], got shape {list(y.shape)}")
    return checked_labels(y, num_classes, where)


def _normalization(arrays: dict[str, np.ndarray], x: np.ndarray, path: Path):
    if x.ndim != 4:
        return None, None
    channels = x.shape[-1]
    if "mean" not in arrays and "std" not in arrays:
        return (0.5,) * channels, (0.5,) * channels
    try:
        mean, std = (tuple(float(v) for v in np.ravel(arrays[k])) for k in ("mean", "std"))
    except KeyError as exc:
        raise MiakitError(f"{path}: give both 'mean' and 'std', or neither") from exc
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise MiakitError(f"{path}: 'mean' and 'std' need {channels} values, std > 0")
    return mean, std


def _from_folder(root: Path) -> Pool:
    has_splits = (root / "train").is_dir() and (root / "test").is_dir()
    splits = ("train", "test") if has_splits else ("",)
    found = class_files(root, splits)
    pool_files = found[splits[0]]
    if not pool_files:
        raise MiakitError(
            f"{root}: no images found; expected <class>/<image> subfolders (or train/ and test/ "
            "folders of them)"
        )
    classes = tuple(sorted(pool_files))
    x, y = decode_classes(pool_files, classes, str(root))
    x_test = y_test = None
    if has_splits:
        unknown = sorted(set(found["test"]) - set(classes))
        if unknown:
            raise MiakitError(f"{root}/test: classes {unknown} do not appear in {root}/train")
        x_test, y_test = decode_classes(found["test"], classes, str(root / "test"))
        if x_test.shape[1:] != x.shape[1:]:
            raise MiakitError(f"{root}: test images {x_test.shape[1:]} differ from {x.shape[1:]}")
    grey = _is_grey(x) and (x_test is None or _is_grey(x_test))
    if grey:
        x = x[..., :1].copy()
        x_test = None if x_test is None else x_test[..., :1].copy()
    channels = x.shape[-1]
    return Pool(
        f"user:{root.name}",
        x,
        y,
        len(classes),
        x_test,
        y_test,
        (0.5,) * channels,
        (0.5,) * channels,
        classes,
    )


def _is_grey(images: np.ndarray) -> bool:
    return bool(
        (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()
    )
