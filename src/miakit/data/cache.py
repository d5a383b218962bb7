"""Decoded arrays cached by the checksums of the files they came from.

Decoding tens of thousands of JPEG/PNG/PPM images or a large CSV takes seconds to minutes, and
every pipeline stage loads the pool. The cache key holds the source files' md5s (computed anyway
to verify them) and a format version, so changed or replaced data is never served stale. The
cache lives in the user cache folder, not the data folder, which may be read-only.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from miakit.store import atomic_path, content_hash


def cache_dir() -> Path:
    """$MIAKIT_CACHE, else $XDG_CACHE_HOME/miakit/decoded, else ~/.cache/miakit/decoded."""
    if os.environ.get("MIAKIT_CACHE"):
        return Path(os.environ["MIAKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "miakit" / "decoded"


def cached_arrays(
    name: str, sources: list[str], build: Callable[[], dict[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """`build()`'s arrays, from the cache when the same sources were decoded before."""
    path = cache_dir() / f"{name}-{content_hash(sources)[:20]}.npz"
    try:
        with np.load(path, allow_pickle=False) as stored:
            return {key: stored[key] for key in stored.files}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt
    arrays = build()
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError:
        pass  # an unwritable cache only costs time
    return arrays
