"""The run directory: where every stage reads and writes, with atomic writes and content hashes.

Layout (see DESIGN.md): run.yaml, keep.npy, labels.npy, pool.json, models/<mmmm>/{weights.safetensors,
trace.npy, logits.npy, meta.json}, transfer/ (transfer learning only), scores/<attack>.npy,
metrics.json, metrics.csv, plots/.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from miakit.errors import MiakitError


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; move it onto `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_atomic(path: Path, writer: Callable[[Path], Any]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    write_atomic(path, write)


def save_json(path: Path, obj: Any) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n"))


def save_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def content_hash(obj: Any) -> str:
    """SHA-256 of the canonical JSON of `obj` (dict keys sorted), as hex."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex; cached while its size and modification time stay."""
    stat = path.stat()
    return _file_hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _file_hash(path: str, _size: int, _mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def path_fingerprint(path: Path) -> str:
    """A file's content hash; for a folder, a hash of every file's relative path, size and
    modification time (reading every image of a large folder would cost more than it saves)."""
    if path.is_file():
        return file_hash(path)
    if not path.is_dir():
        raise MiakitError(f"{path} does not exist")
    listing = sorted(
        (str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns)
        for f in path.rglob("*")
        if f.is_file()
    )
    return content_hash(listing)


def array_hash(array: np.ndarray) -> str:
    contiguous = np.ascontiguousarray(array)
    header = f"{contiguous.dtype.str}{contiguous.shape}".encode()
    return hashlib.sha256(header + contiguous.tobytes()).hexdigest()


def load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    """Load an array, turning a missing or unreadable file into one clear error."""
    if not path.is_file():
        raise MiakitError(f"missing file {path}")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise MiakitError(
            f"{path} is not a readable .npy file ({exc}); delete it and rerun"
        ) from exc


class RunDir:
    """Paths of one run; knows nothing of what is inside the files beyond their names."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    run_yaml = property(lambda self: self.root / "run.yaml")
    keep = property(lambda self: self.root / "keep.npy")
    labels = property(lambda self: self.root / "labels.npy")
    pool = property(lambda self: self.root / "pool.json")
    split = property(lambda self: self.root / "split.json")
    eval_records = property(lambda self: self.root / "eval_records.npy")
    pair_records = property(lambda self: self.root / "pair_records.npy")
    metrics_json = property(lambda self: self.root / "metrics.json")
    metrics_csv = property(lambda self: self.root / "metrics.csv")
    plots = property(lambda self: self.root / "plots")
    scores_dir = property(lambda self: self.root / "scores")

    def model_dir(self, m: int) -> Path:
        return self.root / "models" / f"{m:04d}"

    def weights(self, m: int) -> Path:
        return self.model_dir(m) / "weights.safetensors"

    def logits(self, m: int) -> Path:
        return self.model_dir(m) / "logits.npy"

    def trace(self, m: int) -> Path:
        return self.model_dir(m) / "trace.npy"

    def meta(self, m: int) -> Path:
        return self.model_dir(m) / "meta.json"

    def scores(self, attack: str) -> Path:
        return self.scores_dir / f"{attack}.npy"

    def lock(self, m: int) -> Path:
        return self.model_dir(m) / ".lock"

    # transfer learning: the frozen extractor and its features, shared by every model of the run
    transfer_dir = property(lambda self: self.root / "transfer")
    transfer_extractor = property(lambda self: self.transfer_dir / "extractor.safetensors")
    transfer_features = property(lambda self: self.transfer_dir / "features.npy")
    transfer_test_features = property(lambda self: self.transfer_dir / "test_features.npy")
    transfer_json = property(lambda self: self.transfer_dir / "transfer.json")
    transfer_lock = property(lambda self: self.transfer_dir / ".lock")

    def read_meta(self, m: int) -> dict[str, Any] | None:
        """The model's meta.json, or None when it is absent or unreadable (then it is not done)."""
        try:
            return json.loads(self.meta(m).read_text())
        except (OSError, ValueError):
            return None


#: A lock held by a process on another host counts as abandoned after this long.
FOREIGN_LOCK_SECONDS = 24 * 3600


def _lock_abandoned(path: Path) -> bool:
    """True when the lock's owner is gone: a dead pid on this host, or a very old foreign lock."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return True  # half-written by a process killed while taking it
    if owner.get("host") != socket.gethostname():
        return time.time() - owner.get("since", 0) > FOREIGN_LOCK_SECONDS
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError):
        return False
    return False


def model_lock(run: RunDir, m: int) -> AbstractContextManager[bool]:
    """Hold model m's lock while working on it; yields False when a live worker holds it."""
    return file_lock(run.lock(m))


@contextmanager
def file_lock(path: Path) -> Iterator[bool]:
    """Hold the lock at `path` while working; yields False when a live worker holds it.

    The lock is a file created with O_EXCL, so two workers (processes, Ray tasks, shards on other
    machines sharing the run directory) never write the same thing at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not _lock_abandoned(path):
                yield False
                return
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(owner)
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False
