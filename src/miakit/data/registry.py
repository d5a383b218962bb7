"""Data sets by name, and where their files live."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from miakit.data.adult import load_adult
from miakit.data.breast_cancer import load_breast_cancer_pool
from miakit.data.cifar import load_cifar10, load_cifar100
from miakit.data.digits import load_digits_pool
from miakit.data.download import ensure_files
from miakit.data.gtsrb import load_gtsrb
from miakit.data.idx import load_fashion_mnist, load_mnist
from miakit.data.image_folder import load_cifar10_jpeg, load_cinic10
from miakit.data.pool import Pool
from miakit.data.sources import SOURCES
from miakit.data.tabular import load_location, load_purchase100, load_texas100
from miakit.data.user import load_user
from miakit.errors import MiakitError
from miakit.seeding import rng

#: name → loader taking the data directory (loaders that need no files ignore it).
DATASETS: dict[str, Callable[[Path], Pool]] = {
    "digits": load_digits_pool,
    "breast-cancer": load_breast_cancer_pool,
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "cifar10-jpeg": load_cifar10_jpeg,
    "cinic10": load_cinic10,
    "gtsrb": load_gtsrb,
    "purchase100": load_purchase100,
    "texas100": load_texas100,
    "location": load_location,
    "adult": load_adult,
}
#: data.name for the user's own data, read from data.path (an .npz file or a folder of classes).
USER_DATA = "user"


def resolve_data_dir(configured: Path | None = None) -> Path:
    """The config's data_dir, else $MIAKIT_DATA, else a per-user cache folder."""
    if configured is not None:
        return Path(configured).expanduser()
    if os.environ.get("MIAKIT_DATA"):
        return Path(os.environ["MIAKIT_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "miakit"


def load_pool(
    name: str,
    data_dir: Path | None = None,
    *,
    path: Path | None = None,
    subsample: int | None = None,
    seed: int = 0,
    download: bool = True,
) -> Pool:
    """The named data set's pool, its missing files downloaded first (unless `download` is off).

    name "user" reads `path`. `subsample` keeps that many pool records, drawn without replacement
    with a generator seeded from (`seed`, "subsample"), in their original order; the test split
    stays whole.
    """
    if name == USER_DATA:
        if path is None:
            raise MiakitError("data.path: data.name 'user' needs data.path (an .npz or a folder)")
        pool = load_user(Path(path))
    elif name not in DATASETS:
        known = ", ".join([*sorted(DATASETS), USER_DATA])
        raise MiakitError(f"data.name: unknown data set {name!r}; known: {known}")
    else:
        if path is not None:
            raise MiakitError(f"data.path: only used with data.name 'user', not {name!r}")
        root = resolve_data_dir(data_dir)
        if name in SOURCES:  # a data set registered without files (e.g. in tests) needs none
            ensure_files(SOURCES[name], root, download)
        pool = DATASETS[name](root)
    user = name == USER_DATA
    check_classes(pool, f"data.path {path}: y" if user else f"data.name {name}: y", user)
    return pool if subsample is None else subsample_pool(pool, subsample, seed)


def check_classes(pool: Pool, where: str, user: bool) -> None:
    """MiakitError naming `where` for labels no audit can use: a single class (a constant label
    carries no membership signal), test labels of classes the pool has no record of, or, in the
    user's data (`user`; a published data set has its own class count), more classes than
    records (labels that are not class indices 0, 1, …; every model's logits would hold that
    many columns). Text records are exempt: a language model's signal is its tokens, not a
    label."""
    if pool.is_text:
        return
    present = np.unique(pool.y)
    if len(present) < 2:
        raise MiakitError(
            f"{where}: every record has label {present[0]}; no membership signal can be read "
            "from a constant label, so an audit needs records of at least two classes"
        )
    if user and pool.num_classes > pool.num_records:
        raise MiakitError(
            f"{where}: {pool.num_classes:,} classes for {pool.num_records:,} records (labels up "
            f"to {pool.num_classes - 1:,}); labels must be class indices 0, 1, … of classes "
            "that have records"
        )
    if pool.y_test is not None:
        absent = np.setdiff1d(np.unique(pool.y_test), present)
        if absent.size:
            raise MiakitError(
                f"{where}_test: classes {absent[:10].tolist()} have test records but no pool "
                "record; a model cannot learn them"
            )


def subsample_pool(pool: Pool, size: int, seed: int) -> Pool:
    return pool.take(subsample_indices(pool, size, seed))


def subsample_indices(pool: Pool, size: int, seed: int) -> np.ndarray:
    """The sorted indices of the records `data.subsample` keeps (the others are the "rest")."""
    if not 2 <= size <= pool.num_records:
        raise MiakitError(
            f"data.subsample: must lie in [2, {pool.num_records}] for {pool.name}, got {size}"
        )
    return np.sort(rng(seed, "subsample").choice(pool.num_records, size, replace=False))
