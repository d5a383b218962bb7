"""The run directory: where every stage reads and writes, with atomic writes and content hashes.

Layout (see DESIGN.md): run.yaml, keep.npy, labels.npy, pool.json, models/<mmmm>/{weights.safetensors
or estimator.skops, trace.npy, logits.npy, meta.json}, transfer/ (transfer learning only), scores/<attack>.npy,
metrics.json, metrics.csv, plots/.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from miakit.errors import MiakitError


@lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask, read once (Linux: from /proc without changing it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain `open(path, "w")` gives a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; move it onto `path` only if the block succeeds.

    The temporary file is `.<name>.<writer>.<random>.tmp`, <writer> naming this process (hashes
    of its host and boot, its pid and start time), so that `clear_leftovers` removes it only once
    its writer is gone.

    The file gets the mode the umask gives new files (mkstemp alone would make it 0600). On any
    error (a full disk, OSError 28, included) the temporary file is removed and `path` is left as
    it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{_writer_tag()}."  # whose it is: see clear_leftovers
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, file_mode())
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.filename is None or Path(exc.filename) == tmp_path:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc  # name the file meant
        raise
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
    write_atomic(path, lambda tmp: tmp.write_text(json_text(obj)))


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def save_text(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def save_bytes_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` atomically unless `path` already holds exactly these bytes (then leave the
    file, and its modification time, alone). Returns whether it wrote."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomic(path, lambda tmp: tmp.write_bytes(data))
    return True


def content_hash(obj: Any) -> str:
    """SHA-256 of the canonical JSON of `obj` (dict keys sorted), as hex."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, as hex; cached while its size, modification and change times
    stay."""
    stat = path.stat()
    return _file_hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def file_stamp(path: Path) -> dict[str, Any]:
    """A file's SHA-256 with the stat fields that let `stamped_hash` trust it without a reread:
    size, modification time and inode change time (which no user tool can set back)."""
    stat = path.stat()
    return {
        "sha256": file_hash(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
    }


def stamped_hash(path: Path, stamp: dict[str, Any] | None = None) -> str | None:
    """The SHA-256 of the file at `path` (None when there is none). When `stamp` (a `file_stamp`
    taken earlier) has the file's current size, mtime and ctime, its hash is taken as is; any
    other file is read and hashed."""
    try:
        stat = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    if stamp and [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns] == [
        stamp.get("size"),
        stamp.get("mtime_ns"),
        stamp.get("ctime_ns"),
    ]:
        return stamp.get("sha256")
    try:
        return file_hash(path)
    except OSError:
        return None


@lru_cache(maxsize=4096)
def _file_hash(path: str, _size: int, _mtime_ns: int, _ctime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: Keys of a JSON document that holds its own record (metrics.json, audit.json): what it was made
#: from (`miakit.chain`) and of what it holds, which its content hash does not cover.
RECORD_KEYS = frozenset({"inputs", "inputs_hash", "stamps", "output", "outputs", "content_hash"})


def _document_hash(document: dict[str, Any]) -> str:
    body = {k: v for k, v in document.items() if k not in RECORD_KEYS}
    return content_hash(json.loads(json_text(body)))  # as stored: JSON's own numbers and keys


def document_record(body: dict[str, Any], root: Path, outputs: Any = ()) -> dict[str, Any]:
    """What a JSON document written with its own record adds, so that an edit of it or of the
    files written with it (`outputs`, paths under `root`) is found: the hash of `body` as it is
    stored, and each output's `file_stamp`."""
    return {
        "content_hash": _document_hash(body),
        "outputs": {str(Path(p).relative_to(root)): file_stamp(Path(p)) for p in outputs},
    }


def document_changed(document: dict[str, Any], root: Path) -> str | None:
    """None when `document` (parsed JSON with a `document_record`) and the files it records under
    `root` are as they were written; else what changed, in words."""
    if "content_hash" not in document:
        return "it records no content hash: written by an older miakit, or interrupted"
    if document["content_hash"] != _document_hash(document):
        return "its content was changed since it was written"
    outputs = document.get("outputs")
    for name, stamp in (outputs if isinstance(outputs, dict) else {}).items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            return f"it names {name}, which is no file of the run"
        if not isinstance(stamp, dict) or stamped_hash(root / name, stamp) != stamp.get("sha256"):
            return f"{name} was changed or removed since it was written"
    return None


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
    #: the reference LM's (an hf causal LM's base model's) token log-probs [N, L − 1] of the
    #: pool records, and beside it their meta.json (`miakit.reference_lm`)
    reference_lm = property(lambda self: self.root / "reference_lm" / "token_logprobs.npy")

    def model_dir(self, m: int) -> Path:
        return self.root / "models" / f"{m:04d}"

    def weights(self, m: int) -> Path:
        return self.model_dir(m) / "weights.safetensors"

    def estimator(self, m: int) -> Path:
        """model.arch sklearn: the fitted estimator (skops), in place of weights.safetensors."""
        return self.model_dir(m) / "estimator.skops"

    def logits(self, m: int) -> Path:
        return self.model_dir(m) / "logits.npy"

    def token_stat(self, m: int, name: str) -> Path:
        """A causal LM's per-token statistic (`miakit.query.TOKEN_STATS`) of model m."""
        return self.model_dir(m) / f"{name}.npy"

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


@lru_cache(maxsize=1)
def boot_id() -> str | None:
    """This machine's boot id (Linux), which changes at every boot; None where unknown."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3… of /proc/<pid>/stat (state first), or None where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2 :].split()
    except (OSError, ValueError):
        return None


def process_start(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux /proc/<pid>/stat field 22):
    with the pid and the boot id it names one process, even after its pid is reused. None
    where unknown."""
    fields = _proc_stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (ValueError, IndexError):
        return None


def lock_owner() -> dict[str, Any]:
    """What a lock records of the process taking it."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "boot_id": boot_id(),
        "start": process_start(os.getpid()),
        "since": time.time(),
    }


def lock_holder(path: Path) -> dict[str, Any] | None:
    """Who holds the lock at `path`, or None when there is no lock: the owner's record with
    `state` added: "live" (a running process on this host), "foreign" (a process on another host,
    not checkable from here, younger than FOREIGN_LOCK_SECONDS) or "dead" (its process is gone:
    a dead pid, a pid now of another process, another boot, or a very old foreign lock; the next
    worker takes it over)."""
    try:
        owner = json.loads(path.read_text())
        if not isinstance(owner, dict):
            raise ValueError("not a mapping")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"state": "dead"}  # half-written by a process killed while taking it
    return {**owner, "state": _holder_state(owner)}


def _holder_state(owner: dict[str, Any]) -> str:
    if owner.get("host") != socket.gethostname():
        old = time.time() - float(owner.get("since", 0)) > FOREIGN_LOCK_SECONDS
        return "dead" if old else "foreign"
    if owner.get("boot_id") and boot_id() and owner["boot_id"] != boot_id():
        return "dead"
    try:
        pid = int(owner["pid"])
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    except (PermissionError, KeyError, ValueError, TypeError, OverflowError):
        pass  # alive but another user's, or no pid recorded: judged by its start time alone
    else:
        fields = _proc_stat(pid)
        if fields and fields[0] in ("Z", "X"):
            return "dead"  # exited, not yet reaped by its parent
        recorded, now = owner.get("start"), process_start(pid)
        if recorded is not None and now is not None and recorded != now:
            return "dead"  # the pid now belongs to another process
    return "live"


def describe_holder(holder: dict[str, Any]) -> str:
    """E.g. "pid 4242 on host gpu-3 since 14:02:11"."""
    since = holder.get("since")
    when = time.strftime(" since %H:%M:%S", time.localtime(since)) if since else ""
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}{when}"


_LEFTOVER = re.compile(
    r"\.(?P<host>[0-9a-f]{8})(?P<boot>[0-9a-f]{8})-(?P<pid>\d+)-(?P<start>\d+|None)\.\w+\.tmp$"
)


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _writer_tag() -> str:
    return (
        f"{_short_hash(socket.gethostname())}{_short_hash(str(boot_id()))}"
        f"-{os.getpid()}-{process_start(os.getpid())}"
    )


def _writer_gone(leftover: Path) -> bool:
    """The process that made `leftover` (an `atomic_path` temporary file) has ended: its name
    names a dead process of this host, or an earlier boot, or no process (another writer's, or
    one of an older miakit); a file of another host counts as gone after FOREIGN_LOCK_SECONDS."""
    tag = _LEFTOVER.search(leftover.name)
    if tag is None:
        return True
    if tag["host"] != _short_hash(socket.gethostname()):
        try:
            return time.time() - leftover.stat().st_mtime > FOREIGN_LOCK_SECONDS
        except OSError:
            return False
    if tag["boot"] != _short_hash(str(boot_id())):
        return True
    start = None if tag["start"] == "None" else int(tag["start"])
    owner = {"host": socket.gethostname(), "pid": int(tag["pid"]), "start": start}
    return _holder_state(owner) == "dead"


def clear_leftovers(*folders: Path, every: bool = False) -> None:
    """Remove the temporary files writers killed mid-write left in `folders` (not below them):
    what a stage runs at its start in every folder it writes, so a run never gathers hidden
    files. Files of writers still running (another process of the same run) are kept, unless
    `every` (the caller holds the folder's lock, so no write there is in progress)."""
    for folder in folders:
        for leftover in folder.glob(".*.tmp"):
            if every or _writer_gone(leftover):
                leftover.unlink(missing_ok=True)


@contextmanager
def model_lock(run: RunDir, m: int) -> Iterator[bool]:
    """Hold model m's lock while working on it; yields False when a live worker holds it.

    Taking the lock removes the temporary files (`atomic_path`'s) a writer killed mid-write left
    in the model's folder: every write there happens under this lock, so none is in progress."""
    with file_lock(run.lock(m)) as mine:
        if mine:
            clear_leftovers(run.model_dir(m), every=True)
        yield mine


@contextmanager
def file_lock(path: Path) -> Iterator[bool]:
    """Hold the lock at `path` while working; yields False when a live worker holds it.

    The lock is a file created with O_EXCL, so two workers (processes, Ray tasks, shards on other
    machines sharing the run directory) never write the same thing at once. It records the
    holder's host, pid, boot id and process start time, so a lock left by a dead process is
    taken over even when its pid has been reused.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = json.dumps(lock_owner())
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = lock_holder(path)
            if holder is not None and holder["state"] != "dead":
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
