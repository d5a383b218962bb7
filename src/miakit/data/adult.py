"""UCI Adult (Census Income) from the official `adult.data` and `adult.test` files.

The pool is `adult.data` (32,561 rows); `adult.test` (16,281 rows; its first line is not a record
and its labels end with '.') is kept as the test split. Label: income >50K → 1, <=50K → 0.

Features (108 on the official files): six numeric columns scaled by fixed constants from the UCI
documentation's value ranges (no record's values move the scaling): age/100, ln(1+fnlwgt)/15,
education-num/16, ln(1+capital-gain)/12, ln(1+capital-loss)/9, hours-per-week/100; then the eight
categorical columns one-hot encoded, with the categories fitted on `adult.data` only (a category
seen only in `adult.test` encodes as all zeros). Missing values ('?', in workclass, occupation and
native-country) are kept as a category of their own rather than dropping those rows: the pool
keeps every official record, so record n is line n of `adult.data`, and missingness is itself
information a model may memorize.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from miakit.data.pool import Pool
from miakit.data.sources import SOURCES
from miakit.data.verify import checked_md5, dataset_folder
from miakit.errors import MiakitError

COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
#: numeric column → (log1p first?, divisor)
NUMERIC = {
    "age": (False, 100.0),
    "fnlwgt": (True, 15.0),
    "education-num": (False, 16.0),
    "capital-gain": (True, 12.0),
    "capital-loss": (True, 9.0),
    "hours-per-week": (False, 100.0),
}
CATEGORICAL = tuple(c for c in COLUMNS[:-1] if c not in NUMERIC)
INCOME = {"<=50K": 0, ">50K": 1}


def read_adult(path: Path, skip_first_line: bool) -> pd.DataFrame:
    """The raw table, every value a stripped string; rows checked for 15 fields."""
    try:
        frame = pd.read_csv(
            path,
            header=None,
            dtype=str,
            skipinitialspace=True,
            keep_default_na=False,
            skiprows=1 if skip_first_line else 0,
        )
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise MiakitError(f"{path}: not a UCI Adult file ({exc})") from exc
    if frame.shape[1] != len(COLUMNS) or frame.isna().any().any() or (frame == "").any().any():
        raise MiakitError(
            f"{path}: every row must have {len(COLUMNS)} comma-separated fields; the file is "
            "truncated or not the UCI Adult data"
        )
    frame.columns = list(COLUMNS)
    return frame


def labels_of(frame: pd.DataFrame, where: str) -> np.ndarray:
    income = frame["income"].str.rstrip(".")
    unknown = sorted(set(income) - set(INCOME))
    if unknown:
        raise MiakitError(f"{where}: income must be <=50K or >50K, found {unknown[:3]}")
    return income.map(INCOME).to_numpy(np.int64)


def encode(frame: pd.DataFrame, categories: dict[str, list[str]], where: str) -> np.ndarray:
    """float32 [rows, 6 + Σ categories]: scaled numeric columns, then one-hot blocks."""
    blocks = []
    for column, (use_log, divisor) in NUMERIC.items():
        try:
            values = pd.to_numeric(frame[column]).to_numpy(np.float64)
        except ValueError as exc:
            raise MiakitError(f"{where}: column {column} must be numeric ({exc})") from exc
        blocks.append((np.log1p(values) if use_log else values)[:, None] / divisor)
    for column in CATEGORICAL:
        values = frame[column].to_numpy()
        blocks.append(values[:, None] == np.array(categories[column], dtype=object)[None, :])
    return np.concatenate(blocks, axis=1).astype(np.float32)


def load_adult(data_dir: Path) -> Pool:
    info = SOURCES["adult"]
    folder = dataset_folder(info, data_dir)
    for spec in info.files:
        checked_md5(folder / spec.name, spec, info)
    train = read_adult(folder / "adult.data", skip_first_line=False)
    test = read_adult(folder / "adult.test", skip_first_line=True)
    categories = {c: sorted(set(train[c])) for c in CATEGORICAL}
    return info.pool(
        encode(train, categories, str(folder / "adult.data")),
        labels_of(train, str(folder / "adult.data")),
        encode(test, categories, str(folder / "adult.test")),
        labels_of(test, str(folder / "adult.test")),
        class_names=("<=50K", ">50K"),
    )
