"""The user's own data: .npz files and folders of class subfolders, good and bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from miakit.data.user import load_user
from miakit.errors import MiakitError

from .data_helpers import image_bytes

RNG = np.random.default_rng(23)


def test_npz_features_with_a_test_split(tmp_path):
    x = RNG.normal(size=(6, 4))
    path = tmp_path / "mine.npz"
    np.savez(path, x=x, y=[0, 1, 2, 0, 1, 2], x_test=x[:2], y_test=[2, 0])
    pool = load_user(path)
    assert pool.name == "user:mine.npz" and pool.num_classes == 3
    assert pool.x.dtype == np.float32 and np.allclose(pool.x, x)
    assert pool.y.tolist() == [0, 1, 2, 0, 1, 2] and pool.y_test.tolist() == [2, 0]
    assert pool.mean is None


def test_npz_images_get_fixed_normalization_unless_given(tmp_path):
    images = RNG.integers(0, 256, (4, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=images, y=[0, 1, 0, 1], num_classes=5)
    pool = load_user(tmp_path / "a.npz")
    assert pool.x.shape == (4, 8, 8, 1) and pool.num_classes == 5
    assert pool.mean == (0.5,) and pool.std == (0.5,) and pool.is_image
    rgb = RNG.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "b.npz", x=rgb, y=[0, 1], mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6])
    assert load_user(tmp_path / "b.npz").std == (0.4, 0.5, 0.6)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 2))}, "needs arrays 'x' and 'y'"),
        ({"x": np.zeros((3, 2)), "y": [0, 1]}, r"expected 3 labels \[N\]"),
        ({"x": np.zeros((2, 2)), "y": [0, -1]}, r"labels must lie in \[0, 0\]"),
        ({"x": np.zeros((2, 2)), "y": [0.5, 1.0]}, "labels must be integer class indices"),
        ({"x": np.zeros((2, 2)), "y": [0, 3], "num_classes": 2}, r"found \[0, 3\]"),
        ({"x": np.full((2, 2), np.nan), "y": [0, 1]}, "NaN or infinite"),
        ({"x": np.zeros((2, 3, 3, 3)), "y": [0, 1]}, "uint8 images"),
        ({"x": np.zeros((2, 2)), "y": [0, 1], "x_test": np.zeros((1, 3))}, "give both"),
        (
            {"x": np.zeros((2, 2)), "y": [0, 1], "x_test": np.zeros((1, 3)), "y_test": [0]},
            "x_test records",
        ),
        ({"x": np.zeros((2, 4, 4, 3), np.uint8), "y": [0, 1], "mean": [0.5]}, "give both"),
    ],
)
def test_bad_npz_files_are_reported(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(MiakitError, match=message):
        load_user(tmp_path / "bad.npz")


def test_pickled_objects_are_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object), y=[0, 1])
    with pytest.raises(MiakitError, match="without pickled objects"):
        load_user(tmp_path / "obj.npz")


def test_neither_npz_nor_folder_is_reported(tmp_path):
    (tmp_path / "data.dat").write_text("1,2\n")
    with pytest.raises(MiakitError, match=r"neither an \.npz file nor a folder"):
        load_user(tmp_path / "data.dat")


def write_images(root: Path, layout: dict[str, list[np.ndarray]]) -> None:
    for relative, images in layout.items():
        (root / relative).mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(images):
            (root / relative / f"{k}.png").write_bytes(image_bytes(image, "PNG"))


def colour(level: int, channels: int = 3) -> np.ndarray:
    image = np.full((6, 5, channels), level, dtype=np.uint8)
    if channels == 3:
        image[..., 2] = 255 - level
    return image


def test_folder_of_classes_sorted_by_name(tmp_path):
    write_images(tmp_path, {"zebra": [colour(1)], "ant": [colour(2), colour(3)]})
    pool = load_user(tmp_path)
    assert pool.class_names == ("ant", "zebra") and pool.y.tolist() == [0, 0, 1]
    assert pool.x.shape == (3, 6, 5, 3) and pool.x[:, 0, 0, 0].tolist() == [2, 3, 1]
    assert pool.x_test is None and pool.mean == (0.5, 0.5, 0.5)


def test_folder_with_train_and_test_splits_of_grey_images(tmp_path):
    write_images(
        tmp_path,
        {
            "train/a": [colour(9, 1)],
            "train/b": [colour(8, 1), colour(7, 1)],
            "test/b": [colour(6, 1)],
        },
    )
    pool = load_user(tmp_path)
    assert pool.x.shape == (3, 6, 5, 1) and pool.x_test.shape == (1, 6, 5, 1)
    assert pool.y_test.tolist() == [1] and pool.mean == (0.5,)


def test_folder_with_images_of_different_sizes_is_reported(tmp_path):
    write_images(tmp_path, {"a": [colour(1)], "b": [np.zeros((7, 7, 3), np.uint8)]})
    with pytest.raises(MiakitError, match="different sizes"):
        load_user(tmp_path)


def test_test_classes_must_exist_in_train(tmp_path):
    write_images(tmp_path, {"train/a": [colour(1)], "test/c": [colour(1)]})
    with pytest.raises(MiakitError, match=r"classes \['c'\] do not appear"):
        load_user(tmp_path)


def test_empty_folder_is_reported(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(MiakitError, match="no images found"):
        load_user(tmp_path)
