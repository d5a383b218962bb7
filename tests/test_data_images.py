"""Class-folder image data sets written here: CINIC-10 PNGs, the CIFAR-10 JPEG copy, GTSRB PPMs."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

import miakit.data.image_folder as image_folder
from miakit.data.gtsrb import load_gtsrb
from miakit.data.image_folder import CIFAR10_CLASSES, load_cifar10_jpeg, load_cinic10
from miakit.errors import MiakitError

from .data_helpers import image_bytes, truncate, use_files, write_tar

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIAKIT_CACHE", str(tmp_path / "cache"))


def cinic_archive(folder: Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """Two train and one test PNG per class, named so that text order differs from number order."""
    images: dict[str, dict[str, list[np.ndarray]]] = {"train": {}, "test": {}}
    members = {"CINIC-10/README.md": b"readme"}
    for split, count in (("train", 2), ("test", 1)):
        for name in CIFAR10_CLASSES:
            arrays = [RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(count)]
            images[split][name] = arrays
            for k, array in enumerate(arrays):
                file_name = f"cifar10-{split}-{[9, 10][k]}.png"  # '10' sorts before '9' as text
                members[f"CINIC-10/{split}/{name}/{file_name}"] = image_bytes(array, "PNG")
        members[f"CINIC-10/valid/{CIFAR10_CLASSES[0]}/x.png"] = image_bytes(arrays[0], "PNG")
    write_tar(folder / "CINIC-10.tar.gz", members)
    return images


def test_cinic10_reads_train_and_test_class_folders(tmp_path, monkeypatch):
    images = cinic_archive(tmp_path / "cinic10")
    use_files(monkeypatch, "cinic10", tmp_path / "cinic10")
    pool = load_cinic10(tmp_path)
    assert pool.x.shape == (20, 32, 32, 3) and pool.x_test.shape == (10, 32, 32, 3)
    assert pool.y.tolist() == [c for c in range(10) for _ in range(2)]
    expected = np.stack([a for name in CIFAR10_CLASSES for a in images["train"][name]])
    assert np.array_equal(pool.x, expected)  # PNG is lossless; file 9 before file 10
    assert pool.y_test.tolist() == list(range(10)) and pool.class_names == CIFAR10_CLASSES


def test_a_missing_class_folder_is_reported(tmp_path, monkeypatch):
    array = np.zeros((32, 32, 3), np.uint8)
    write_tar(
        tmp_path / "cinic10" / "CINIC-10.tar.gz",
        {f"{s}/airplane/a.png": image_bytes(array, "PNG") for s in ("train", "test")},
    )
    use_files(monkeypatch, "cinic10", tmp_path / "cinic10")
    with pytest.raises(MiakitError, match=r"missing: \['automobile'"):
        load_cinic10(tmp_path)


def test_a_corrupt_image_is_reported_by_name(tmp_path, monkeypatch):
    cinic_archive(tmp_path / "cinic10")
    array = np.zeros((32, 32, 3), np.uint8)
    members = {
        f"{s}/{c}/a.png": image_bytes(array, "PNG")
        for s in ("train", "test")
        for c in CIFAR10_CLASSES
    }
    members["train/cat/a.png"] = members["train/cat/a.png"][:40]
    write_tar(tmp_path / "cinic10" / "CINIC-10.tar.gz", members)
    use_files(monkeypatch, "cinic10", tmp_path / "cinic10")
    with pytest.raises(MiakitError, match=r"train:cat/a\.png: not a readable image"):
        load_cinic10(tmp_path)


# --- CIFAR-10 JPEG copy: class folders whose k-th file is the k-th record of that class ---

TRAIN_LABELS = np.array([6, 9, 9, 4, 1, 1, 2, 7, 8, 3, 4, 7, 7, 2, 9, 9, 9, 3, 2, 6, 0, 5, 8, 0])
TEST_LABELS = np.arange(10)[::-1].repeat(2)


def shade(index: int) -> np.ndarray:
    """A flat image whose grey level names the record; JPEG keeps flat images within ±2."""
    return np.full((32, 32, 3), 10 * index + 5, dtype=np.uint8)


def jpeg_copy(folder: Path, train_labels=TRAIN_LABELS, drop: str | None = None) -> None:
    members = {}
    for split, labels in (("train", train_labels), ("test", TEST_LABELS)):
        seen = dict.fromkeys(range(10), 0)
        for index, label in enumerate(labels):
            name = f"{split}/{CIFAR10_CLASSES[label]}/{seen[label]:04d}.jpg"
            seen[label] += 1
            members[name] = image_bytes(shade(index), "JPEG")
    members.pop(drop, None)
    write_tar(folder / "cifar10-images-jpg-q75.tar.gz", members)
    np.savez(
        folder / "cifar10_labels_original_order.npz",
        train_labels=TRAIN_LABELS.astype(np.uint8),
        test_labels=TEST_LABELS.astype(np.uint8),
    )


def test_cifar10_jpeg_restores_the_original_record_order(tmp_path, monkeypatch):
    jpeg_copy(tmp_path / "cifar10_jpeg_lossy")
    use_files(monkeypatch, "cifar10-jpeg", tmp_path / "cifar10_jpeg_lossy")
    pool = load_cifar10_jpeg(tmp_path)
    assert pool.y.tolist() == TRAIN_LABELS.tolist() and pool.y_test.tolist() == TEST_LABELS.tolist()
    levels = pool.x.reshape(len(pool.x), -1).mean(axis=1)
    assert np.allclose(levels, 10 * np.arange(len(TRAIN_LABELS)) + 5, atol=2)
    test_levels = pool.x_test.reshape(len(pool.x_test), -1).mean(axis=1)
    assert np.allclose(test_levels, 10 * np.arange(len(TEST_LABELS)) + 5, atol=2)


def test_cifar10_jpeg_counts_must_match_the_label_file(tmp_path, monkeypatch):
    jpeg_copy(tmp_path / "cifar10_jpeg_lossy", drop="train/truck/0002.jpg")
    use_files(monkeypatch, "cifar10-jpeg", tmp_path / "cifar10_jpeg_lossy")
    with pytest.raises(MiakitError, match="truck: 4 images but the label file has 5 records"):
        load_cifar10_jpeg(tmp_path)


def test_cifar10_jpeg_checksums_are_checked(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10_jpeg_lossy"
    jpeg_copy(folder)
    use_files(monkeypatch, "cifar10-jpeg", folder)
    truncate(folder / "cifar10-images-jpg-q75.tar.gz", 0.9)
    with pytest.raises(MiakitError, match=r"checksum mismatch.*intact copy"):
        load_cifar10_jpeg(tmp_path)


def test_decoded_arrays_are_cached_by_the_files_checksums(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10_jpeg_lossy"
    jpeg_copy(folder)
    use_files(monkeypatch, "cifar10-jpeg", folder)
    first = load_cifar10_jpeg(tmp_path)

    def no_decoding(*args):
        raise AssertionError("decoded again although the files did not change")

    monkeypatch.setattr(image_folder, "decode", no_decoding)
    second = load_cifar10_jpeg(tmp_path)
    assert np.array_equal(first.x, second.x) and np.array_equal(first.y_test, second.y_test)
    assert len(list((tmp_path / "cache").iterdir())) == 1

    labels = TRAIN_LABELS.copy()
    labels[[0, 1]] = labels[[1, 0]]  # another data set: another checksum, so no stale cache
    jpeg_copy(folder, train_labels=labels)
    use_files(monkeypatch, "cifar10-jpeg", folder)
    with pytest.raises(AssertionError, match="decoded again"):
        load_cifar10_jpeg(tmp_path)


# --- GTSRB: zip archives of PPM images in 5-digit class folders, test classes in a CSV ---


def zip_file(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def ppm(level: int, size: tuple[int, int]) -> bytes:
    return image_bytes(np.full((size[1], size[0], 3), level, dtype=np.uint8), "PPM")


def gtsrb_archives(folder: Path, test_classes=(42, 0, 7)) -> None:
    train = {"GTSRB/Final_Training/Images/00042/GT-00042.csv": b"Filename;ClassId\n"}
    for cls, level in ((0, 10), (7, 70), (42, 200)):
        for image in (10, 2):  # number order differs from text order
            name = f"GTSRB/Final_Training/Images/{cls:05d}/00000_{image:05d}.ppm"
            train[name] = ppm(level + image, (40 + image, 35))
    zip_file(folder / "GTSRB_Final_Training_Images.zip", train)
    test = {f"GTSRB/Final_Test/Images/{i:05d}.ppm": ppm(30 * i, (50, 61)) for i in range(3)}
    zip_file(folder / "GTSRB_Final_Test_Images.zip", test)
    rows = ["Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"]
    rows += [f"{i:05d}.ppm;50;61;5;5;45;56;{c}" for i, c in enumerate(test_classes)]
    zip_file(folder / "GTSRB_Final_Test_GT.zip", {"GT-final_test.csv": "\n".join(rows).encode()})


def test_gtsrb_resizes_to_32_and_reads_classes_from_folders_and_csv(tmp_path, monkeypatch):
    gtsrb_archives(tmp_path / "gtsrb")
    use_files(monkeypatch, "gtsrb", tmp_path / "gtsrb")
    pool = load_gtsrb(tmp_path)
    assert pool.x.shape == (6, 32, 32, 3) and pool.x_test.shape == (3, 32, 32, 3)
    assert pool.y.tolist() == [0, 0, 7, 7, 42, 42] and pool.num_classes == 43
    assert pool.x[:, 0, 0, 0].tolist() == [12, 20, 72, 80, 202, 210]  # flat images stay flat
    assert pool.y_test.tolist() == [42, 0, 7] and pool.x_test[:, 5, 5, 1].tolist() == [0, 30, 60]


def test_gtsrb_test_class_out_of_range_is_reported(tmp_path, monkeypatch):
    gtsrb_archives(tmp_path / "gtsrb", test_classes=(1, 43, 2))
    use_files(monkeypatch, "gtsrb", tmp_path / "gtsrb")
    with pytest.raises(MiakitError, match=r"labels must lie in \[0, 42\], found \[1, 43\]"):
        load_gtsrb(tmp_path)


def test_gtsrb_corrupt_zip_is_reported(tmp_path, monkeypatch):
    gtsrb_archives(tmp_path / "gtsrb")
    truncate(tmp_path / "gtsrb" / "GTSRB_Final_Test_Images.zip", 0.7)
    use_files(monkeypatch, "gtsrb", tmp_path / "gtsrb")
    with pytest.raises(MiakitError, match="corrupt zip"):
        load_gtsrb(tmp_path)


def test_decode_converts_and_resizes():
    grey = image_bytes(np.full((10, 12, 1), 77, np.uint8), "PNG")
    assert image_folder.decode(grey, "RGB", None, "x").shape == (10, 12, 3)
    assert image_folder.decode(grey, "L", (4, 6), "x").shape == (6, 4, 1)
    with pytest.raises(MiakitError, match="not a readable image"):
        image_folder.decode(io.BytesIO(b"nope").getvalue(), "RGB", None, "x")
