"""Data sets by name, and where their files live."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from miakit.data.digits import load_digits_pool
from miakit.data.pool import Pool
from miakit.errors import MiakitError

#: name → loader taking the data directory (loaders that need no files ignore it).
DATASETS: dict[str, Callable[[Path], Pool]] = {
    "digits": load_digits_pool,
}


def resolve_data_dir(configured: Path | None = None) -> Path:
    """The config's data_dir, else $MIAKIT_DATA, else a per-user cache folder."""
    if configured is not None:
        return Path(configured).expanduser()
    if os.environ.get("MIAKIT_DATA"):
        return Path(os.environ["MIAKIT_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "miakit"


def load_pool(name: str, data_dir: Path | None = None) -> Pool:
    if name not in DATASETS:
        raise MiakitError(
            f"data.name: unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}"
        )
    return DATASETS[name](resolve_data_dir(data_dir))
