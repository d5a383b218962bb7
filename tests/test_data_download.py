"""The downloader against a local HTTP server (with Range support) that each test starts."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console

from miakit.data.download import ensure_files, fetch_file
from miakit.data.sources import DatasetInfo, RemoteFile
from miakit.errors import MiakitError

PAYLOAD = bytes(range(256)) * 2000  # 512,000 bytes


@dataclass
class Server:
    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # one-shot: stop sending after N bytes
    honour_range: bool = True
    ranges: list[str | None] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    state: Server

    def do_GET(self) -> None:
        state = self.server.state  # type: ignore[attr-defined]
        data = state.files.get(self.path)
        state.ranges.append(self.headers.get("Range"))
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match and state.honour_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = state.cut_after.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = Server(f"http://127.0.0.1:{httpd.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd.state  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def quiet() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120)


def test_download_is_verified_and_moved_into_place_with_a_progress_bar(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    console = quiet()
    dest = tmp_path / "data.bin"
    fetch_file(RemoteFile("data.bin", (f"{server.url}/data.bin",), md5(PAYLOAD)), dest, console)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]
    shown = console.file.getvalue()
    assert "data.bin" in shown and "512.0" in shown  # file name and size (512.0 kB)


def test_interrupted_download_resumes_with_a_range_request(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.cut_after["/data.bin"] = 200_000
    spec = RemoteFile("data.bin", (f"{server.url}/data.bin",), md5(PAYLOAD))
    dest = tmp_path / "data.bin"
    with pytest.raises(MiakitError, match="resumes"):
        fetch_file(spec, dest, quiet())
    assert not dest.exists()
    assert (tmp_path / "data.bin.part").stat().st_size == 200_000
    fetch_file(spec, dest, quiet())
    assert server.ranges == [None, "bytes=200000-"]
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.bin.part").exists()


def test_a_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "data.bin.part").write_bytes(b"stale bytes from elsewhere")
    spec = RemoteFile("data.bin", (f"{server.url}/data.bin",), md5(PAYLOAD))
    fetch_file(spec, tmp_path / "data.bin", quiet())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_a_complete_part_file_is_verified_without_downloading_again(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    spec = RemoteFile("data.bin", (f"{server.url}/data.bin",), md5(PAYLOAD))
    fetch_file(spec, tmp_path / "data.bin", quiet())
    assert server.ranges == [f"bytes={len(PAYLOAD)}-"]
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_corrupt_download_is_detected_and_nothing_is_left(server, tmp_path):
    corrupt = bytearray(PAYLOAD)
    corrupt[1000] ^= 0xFF
    server.files["/data.bin"] = bytes(corrupt)
    spec = RemoteFile("data.bin", (f"{server.url}/data.bin",), md5(PAYLOAD))
    with pytest.raises(MiakitError, match=r"corrupt.*md5"):
        fetch_file(spec, tmp_path / "data.bin", quiet())
    assert list(tmp_path.iterdir()) == []


def test_recompressed_gzip_passes_on_its_decompressed_checksum(server, tmp_path):
    official = gzip.compress(PAYLOAD, compresslevel=9, mtime=0)
    recompressed = gzip.compress(PAYLOAD, compresslevel=1, mtime=0)
    assert official != recompressed
    server.files["/x.gz"] = recompressed
    spec = RemoteFile("x.gz", (f"{server.url}/x.gz",), md5(official), md5(PAYLOAD))
    fetch_file(spec, tmp_path / "x.gz", quiet())
    assert gzip.decompress((tmp_path / "x.gz").read_bytes()) == PAYLOAD


def test_without_a_published_checksum_a_truncated_archive_is_caught_by_its_crc(server, tmp_path):
    archive = gzip.compress(PAYLOAD)
    server.files["/x.tgz"] = archive[: len(archive) // 2]  # served whole, but a cut archive
    with pytest.raises(MiakitError, match="truncated or corrupt"):
        fetch_file(RemoteFile("x.tgz", (f"{server.url}/x.tgz",)), tmp_path / "x.tgz", quiet())
    assert list(tmp_path.iterdir()) == []


def test_the_next_mirror_is_tried_after_a_failure(server, tmp_path):
    server.files["/good/data.bin"] = PAYLOAD
    urls = (f"{server.url}/missing/data.bin", f"{server.url}/good/data.bin")
    fetch_file(RemoteFile("data.bin", urls, md5(PAYLOAD)), tmp_path / "data.bin", quiet())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _info(urls: tuple[str, ...]) -> DatasetInfo:
    files = (RemoteFile("a.bin", urls, md5(PAYLOAD)), RemoteFile("b.bin", urls, md5(PAYLOAD)))
    return DatasetInfo("toy", "Toy", "toy", files, "https://example.org", 1, 0, 2, (1,))


def test_offline_error_names_the_files_the_folder_and_the_url(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/a.bin"
    with pytest.raises(MiakitError) as caught:
        ensure_files(_info((url,)), tmp_path, console=quiet())
    message = str(caught.value)
    assert "offline" in message and url in message and str(tmp_path / "toy") in message
    assert "a.bin" in message and "b.bin" in message
    assert not (tmp_path / "toy" / "a.bin").exists()


def test_failed_download_leaves_no_empty_folder(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/a.bin"
    with pytest.raises(MiakitError, match="offline"):
        ensure_files(_info((url,)), tmp_path / "new" / "data", console=quiet())
    assert list(tmp_path.iterdir()) == []


def test_missing_files_are_an_error_when_downloads_are_off(tmp_path):
    with pytest.raises(MiakitError, match=r"(?s)needs these files.*a\.bin.*b\.bin"):
        ensure_files(_info(("https://example.org/a.bin",)), tmp_path, download=False)


def test_ensure_files_downloads_only_what_is_missing(server, tmp_path):
    server.files["/a.bin"] = PAYLOAD
    server.files["/b.bin"] = PAYLOAD
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "a.bin").write_bytes(PAYLOAD)
    info = DatasetInfo(
        "toy",
        "Toy",
        "toy",
        tuple(RemoteFile(n, (f"{server.url}/{n}",), md5(PAYLOAD)) for n in ("a.bin", "b.bin")),
        "https://example.org",
        1,
        0,
        2,
        (1,),
    )
    assert ensure_files(info, tmp_path, console=quiet()) == tmp_path / "toy"
    assert server.ranges == [None]  # one request: b.bin
    assert (tmp_path / "toy" / "b.bin").read_bytes() == PAYLOAD
