"""Purchase-100, Texas-100, Location and Adult from small files in their official formats."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from miakit.data.adult import load_adult
from miakit.data.tabular import load_location, load_purchase100, load_texas100
from miakit.errors import MiakitError

from .data_helpers import truncate, use_files, write_tar

RNG = np.random.default_rng(17)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIAKIT_CACHE", str(tmp_path / "cache"))


def csv_rows(labels, features: np.ndarray, quote: bool = False) -> bytes:
    lines = []
    for label, row in zip(labels, features, strict=True):
        head = [f'"{label}"' if quote else str(label)] if label is not None else []
        lines.append(",".join(head + [str(v) for v in row]))
    return ("\n".join(lines) + "\n").encode()


def binary(rows: int, columns: int) -> np.ndarray:
    return RNG.integers(0, 2, (rows, columns))


def test_location_labels_become_zero_based_and_features_float32(tmp_path, monkeypatch):
    features = binary(5, 446)
    data = csv_rows([1, 30, 7, 7, 2], features, quote=True)
    write_tar(tmp_path / "location" / "dataset_location.tgz", {"bangkok": data})
    use_files(monkeypatch, "location", tmp_path / "location")
    pool = load_location(tmp_path)
    assert pool.y.tolist() == [0, 29, 6, 6, 1] and pool.num_classes == 30
    assert pool.x.dtype == np.float32 and np.array_equal(pool.x, features)
    assert pool.x_test is None and not pool.is_image


def test_purchase100_reads_label_then_600_features(tmp_path, monkeypatch):
    features = binary(4, 600)
    data = csv_rows([100, 1, 50, 3], features)
    write_tar(tmp_path / "purchase100" / "dataset_purchase.tgz", {"dataset_purchase": data})
    use_files(monkeypatch, "purchase100", tmp_path / "purchase100")
    pool = load_purchase100(tmp_path)
    assert pool.y.tolist() == [99, 0, 49, 2] and np.array_equal(pool.x, features)


def test_texas100_reads_features_and_labels_files(tmp_path, monkeypatch):
    features = binary(3, 6169)
    members = {
        "texas/100/feats": csv_rows([None] * 3, features),
        "texas/100/labels": b"5\n100\n1\n",
    }
    write_tar(tmp_path / "texas100" / "dataset_texas.tgz", members)
    use_files(monkeypatch, "texas100", tmp_path / "texas100")
    pool = load_texas100(tmp_path)
    assert pool.y.tolist() == [4, 99, 0] and np.array_equal(pool.x, features)


def test_texas100_label_count_must_match_the_records(tmp_path, monkeypatch):
    members = {"texas/100/feats": csv_rows([None] * 3, binary(3, 6169)), "texas/100/labels": b"5\n"}
    write_tar(tmp_path / "texas100" / "dataset_texas.tgz", members)
    use_files(monkeypatch, "texas100", tmp_path / "texas100")
    with pytest.raises(MiakitError, match=r"labels: expected an array of shape \[3, 1\]"):
        load_texas100(tmp_path)


def _location(tmp_path: Path, data: bytes, monkeypatch) -> None:
    write_tar(tmp_path / "location" / "dataset_location.tgz", {"bangkok": data})
    use_files(monkeypatch, "location", tmp_path / "location")


def test_wrong_feature_count_is_reported(tmp_path, monkeypatch):
    _location(tmp_path, csv_rows([1, 2], binary(2, 445)), monkeypatch)
    with pytest.raises(MiakitError, match=r"shape \[N, 447\], got \[2, 446\]"):
        load_location(tmp_path)


def test_label_zero_is_out_of_range_for_one_based_files(tmp_path, monkeypatch):
    _location(tmp_path, csv_rows([0, 2], binary(2, 446)), monkeypatch)
    with pytest.raises(MiakitError, match=r"labels must lie in \[1, 30\], found \[0, 2\]"):
        load_location(tmp_path)


def test_ragged_rows_are_reported(tmp_path, monkeypatch):
    data = csv_rows([1, 2], binary(2, 446)) + b"3,0,1\n"
    _location(tmp_path, data, monkeypatch)
    with pytest.raises(MiakitError, match="same number of columns"):
        load_location(tmp_path)


def test_checksum_and_truncation_are_reported(tmp_path, monkeypatch):
    _location(tmp_path, csv_rows([1, 2], binary(2, 446)), monkeypatch)
    truncate(tmp_path / "location" / "dataset_location.tgz")
    with pytest.raises(MiakitError, match="checksum mismatch"):
        load_location(tmp_path)
    use_files(monkeypatch, "location", tmp_path / "location")
    with pytest.raises(MiakitError, match="truncated or corrupt archive"):
        load_location(tmp_path)


def test_an_archive_without_the_data_member_is_reported(tmp_path, monkeypatch):
    _location(tmp_path, b"", monkeypatch)
    write_tar(tmp_path / "location" / "dataset_location.tgz", {"paris": b"1,0\n"})
    use_files(monkeypatch, "location", tmp_path / "location")
    with pytest.raises(MiakitError, match="lacks bangkok"):
        load_location(tmp_path)


# --- Adult ---

ADULT_DATA = """\
39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K
50, Self-emp-not-inc, 83311, Bachelors, 13, Married-civ-spouse, Exec-managerial, Husband, White, Male, 0, 0, 13, United-States, >50K
38, ?, 215646, HS-grad, 9, Divorced, ?, Not-in-family, Black, Female, 0, 1902, 40, ?, <=50K

"""
ADULT_TEST = """\
|1x3 Cross validator
25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, Male, 0, 0, 40, Peru, <=50K.
44, State-gov, 160323, HS-grad, 10, Divorced, Adm-clerical, Not-in-family, White, Female, 7688, 0, 50, United-States, >50K.
"""


def write_adult(folder: Path, data: str = ADULT_DATA, test: str = ADULT_TEST) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adult.data").write_text(data)
    (folder / "adult.test").write_text(test)
    return folder


def test_adult_encoding_is_fitted_on_the_training_file(tmp_path, monkeypatch):
    use_files(monkeypatch, "adult", write_adult(tmp_path / "adult"))
    pool = load_adult(tmp_path)
    # categories seen in adult.data, per column: workclass 3, education 2, marital 3,
    # occupation 3, relationship 2, race 2, sex 2, native-country 2 → 19, plus 6 numeric.
    assert pool.x.shape == (3, 25) and pool.x_test.shape == (2, 25)
    assert pool.y.tolist() == [0, 1, 0] and pool.y_test.tolist() == [0, 1]
    first = pool.x[1]
    expected_numeric = [
        0.50,
        math.log1p(83311) / 15,
        13 / 16,
        0.0,
        0.0,
        0.13,
    ]
    assert np.allclose(first[:6], expected_numeric, rtol=1e-6)
    # workclass categories sorted: ['?', 'Self-emp-not-inc', 'State-gov'] → record 1 is the 2nd
    assert first[6:9].tolist() == [0, 1, 0]
    assert pool.x[2, 6:9].tolist() == [1, 0, 0]  # '?' is a category of its own
    # test row 0: native-country 'Peru' was never seen in adult.data → all zeros in that block
    assert pool.x_test[0, -2:].tolist() == [0, 0] and pool.x_test[1, -2:].tolist() == [0, 1]
    assert pool.x_test[0, 6:9].tolist() == [0, 0, 0]  # workclass 'Private' unseen as well


def test_adult_bad_label_is_reported(tmp_path, monkeypatch):
    folder = write_adult(tmp_path / "adult", test=ADULT_TEST.replace(">50K.", "rich."))
    use_files(monkeypatch, "adult", folder)
    with pytest.raises(MiakitError, match=r"adult\.test: income must be <=50K or >50K"):
        load_adult(tmp_path)


def test_adult_short_row_is_reported(tmp_path, monkeypatch):
    data = ADULT_DATA.replace(", United-States, >50K", ", >50K")
    use_files(monkeypatch, "adult", write_adult(tmp_path / "adult", data=data))
    with pytest.raises(MiakitError, match="15 comma-separated fields"):
        load_adult(tmp_path)


def test_adult_non_numeric_age_is_reported(tmp_path, monkeypatch):
    data = ADULT_DATA.replace("39, State-gov", "old, State-gov")
    use_files(monkeypatch, "adult", write_adult(tmp_path / "adult", data=data))
    with pytest.raises(MiakitError, match="column age must be numeric"):
        load_adult(tmp_path)


def test_adult_checksum_is_checked(tmp_path, monkeypatch):
    folder = write_adult(tmp_path / "adult")
    use_files(monkeypatch, "adult", folder)
    (folder / "adult.data").write_text(ADULT_DATA.replace("77516", "77517"))
    with pytest.raises(MiakitError, match=r"adult\.data: checksum mismatch"):
        load_adult(tmp_path)
