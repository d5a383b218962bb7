"""Downloads of official data files: progress bar, checksum check, resume after an interruption.

A file is fetched into `<name>.part` beside its destination. An interrupted download leaves the
`.part` file, and the next attempt asks the server only for the missing bytes (HTTP Range). Only a
complete, verified file is moved onto its final name (`os.replace`), so a loader never sees a
half-written file.
"""

from __future__ import annotations

import gzip
import http.client
import os
import re
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from miakit.data.sources import DatasetInfo, RemoteFile
from miakit.data.verify import md5_bytes, md5_file, missing_message
from miakit.errors import MiakitError

_CHUNK = 1 << 16
_NETWORK_ERRORS = (OSError, http.client.HTTPException)


class _Failed(Exception):
    """One URL failed; the next mirror may still work."""


def ensure_files(
    info: DatasetInfo, data_dir: Path, download: bool = True, console: Console | None = None
) -> Path:
    """The data set's folder, with every file present: missing ones are downloaded and verified."""
    folder = Path(data_dir) / info.folder
    missing = [f for f in info.files if not (folder / f.name).is_file()]
    if not missing:
        return folder
    if not download or not all(f.urls for f in missing):
        raise MiakitError(missing_message(info, folder, missing))
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MiakitError(
            f"cannot create {folder} ({exc}); choose a writable data folder with --data-dir "
            "or MIAKIT_DATA"
        ) from exc
    try:
        for spec in missing:
            fetch_file(spec, folder / spec.name, console)
    except MiakitError as exc:
        still = [f for f in info.files if not (folder / f.name).is_file()]
        raise MiakitError(f"{exc}\n{missing_message(info, folder, still)}") from exc
    finally:
        _remove_if_empty(created)
    return folder


def _remove_if_empty(folders: list[Path]) -> None:
    """Remove the folders this download created (deepest first) that are still empty: a failed
    download leaves no empty folder behind (a partial file it can resume keeps its folder)."""
    for path in folders:
        try:
            path.rmdir()
        except OSError:
            return


def fetch_file(spec: RemoteFile, dest: Path, console: Console | None = None) -> None:
    """Download `spec` to `dest` from its first URL that works; verify it; then move it in place."""
    part = dest.with_name(dest.name + ".part")
    failures = []
    for url in spec.urls:
        try:
            _download(url, part, console or Console(stderr=True))
        except _Failed as exc:
            failures.append(f"  {url}: {exc}")
            continue
        problem = _problem(part, spec)
        if problem:
            part.unlink(missing_ok=True)
            raise MiakitError(
                f"the download of {spec.name} from {url} is corrupt ({problem}); it was deleted, "
                "so try again"
            )
        os.replace(part, dest)
        return
    kept = f" ({part.name} is kept: the next attempt resumes it)" if part.exists() else ""
    raise MiakitError(f"could not download {spec.name}{kept}:\n" + "\n".join(failures))


def _download(url: str, part: Path, console: Console) -> None:
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "miakit"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=30)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and start:
            return  # the .part file already holds every byte; the checksum decides
        raise _Failed(f"the server answered HTTP {exc.code} {exc.reason}") from exc
    except _NETWORK_ERRORS as exc:
        raise _Failed(f"no connection ({_reason(exc)}); are you offline?") from exc
    with response:
        if start and _range_start(response) != start:
            start = 0  # the server ignored the Range request: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        _stream(response, part, start, total, console)


def _range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if response.status == 206 and match else None


def _stream(response, part: Path, start: int, total: int | None, console: Console) -> None:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    received = start
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(part.name.removesuffix(".part"), total=total, completed=start)
        try:
            with open(part, "ab" if start else "wb") as f:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    progress.update(task, completed=received)
        except _NETWORK_ERRORS as exc:
            raise _Failed(f"interrupted after {received} bytes ({_reason(exc)})") from exc
    if total is not None and received < total:
        raise _Failed(f"interrupted after {received} of {total} bytes")


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or exc) or type(exc).__name__


def _problem(path: Path, spec: RemoteFile) -> str | None:
    """Why the downloaded file is not the published one, or None when it is."""
    if spec.md5 is not None:
        actual = md5_file(path)
        if actual == spec.md5:
            return None
        if spec.content_md5 is None:
            return f"md5 {actual}, expected {spec.md5}"
    if spec.content_md5 is not None:
        try:
            content_md5 = md5_bytes(gzip.decompress(path.read_bytes()))
        except (OSError, EOFError, zlib.error) as exc:
            return f"not a complete gzip file: {exc}"
        return None if content_md5 == spec.content_md5 else "decompressed md5 does not match"
    return _integrity_problem(path, spec.name)


def _integrity_problem(path: Path, name: str) -> str | None:
    """No published checksum: let the archive's own CRCs speak (`name`: the file's final name)."""
    try:
        if name.endswith((".gz", ".tgz")):
            with gzip.open(path, "rb") as f:
                while f.read(_CHUNK):
                    pass
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                bad = z.testzip()
            return f"member {bad} fails its CRC" if bad else None
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
        return f"archive is truncated or corrupt: {exc}"
    return None
