"""Connections kept across the pieces of a download (``sources/keepalive.py``): fewer TCP
connections to the file's origin, a server that closes a kept one, and ``cut`` on a kept one.

Real servers on loopback: the mirror (its CDN counts the connections it accepts) and, for a server
that hangs up on a kept connection, a small ``http.server`` of this file."""

from __future__ import annotations

import contextlib
import hashlib
import re
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2
import pytest
from helpers import serve_tls, wait_for

from alex_models._retry import RetryPolicy
from alex_models._units import MiB
from alex_models.download import Downloader, DownloadOptions, FileJob
from alex_models.errors import RemoteError
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.pieces import plan_pieces
from alex_models.sources import HubSource, Transient, UrlSource, Wire
from alex_models.sources.keepalive import KeptConnections
from alex_models.store import Store

REPO = "org/model"
FIRST = hashlib.shake_256(b"first").digest(8 * MiB)
SECOND = hashlib.shake_256(b"second").digest(8 * MiB)
ONCE = RetryPolicy(attempts=1)
"""No retry by the downloader: a kept connection found closed must be handled where it is kept."""


def hub_job(mirror_root: MirrorRoot, mirror: MirrorServer, path: str, data: bytes) -> FileJob:
    commit = mirror_root.commit(REPO, {path: data})
    source = HubSource(mirror.url, REPO, commit, path)
    return FileJob(hashlib.sha256(data).hexdigest(), len(data), (source,), f"{REPO}/{path}")


def test_the_pieces_of_files_share_as_many_connections_to_the_cdn_as_are_configured(
    mirror_root: MirrorRoot, mirror: MirrorServer, store: Store, client: httpx2.Client
) -> None:
    first = hub_job(mirror_root, mirror, "a.gguf", FIRST)
    second = hub_job(mirror_root, mirror, "b.gguf", SECOND)
    options = DownloadOptions(min_segment=MiB, connections=3, retry=ONCE)
    downloader = Downloader(store, client, options=options)

    assert downloader.fetch(first) is True
    assert downloader.fetch(second) is True

    assert store.blob_path(first.sha256).read_bytes() == FIRST
    assert store.blob_path(second.sha256).read_bytes() == SECOND
    pieces = [r for r in mirror.log if r.origin == "cdn" and r.status == 206]
    assert len(pieces) == 2 * len(plan_pieces(8 * MiB, 3, MiB))
    assert mirror.connections("cdn") <= 3, "each piece, and the next file's, on a kept connection"


class _Ranges(BaseHTTPRequestHandler):
    """Ranged GETs of ``FIRST`` as HTTP/1.1 (so the connection may be kept); when the server says
    ``hang_up``, one per connection: it then reads the next request's line and closes unanswered."""

    protocol_version = "HTTP/1.1"
    server: _CountingServer

    def handle(self) -> None:
        if not self.server.hang_up:
            super().handle()
            return
        self.handle_one_request()
        if self.rfile.readline():
            with self.server.guard:
                self.server.hung_up += 1

    def do_GET(self) -> None:
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        assert match is not None
        start, end = int(match[1]), int(match[2])
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(FIRST)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(FIRST[start : end + 1])
        with self.server.guard:
            self.server.answered += 1
            self.server.sent += end - start + 1

    def log_message(self, *args: object) -> None:
        """Quiet."""


class _CountingServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, *, hang_up: bool, handler: type[BaseHTTPRequestHandler] = _Ranges) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.hang_up = hang_up
        self.guard = threading.Lock()
        self.accepted = self.answered = self.hung_up = self.sent = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted += 1
        super().process_request(request, client_address)


@contextlib.contextmanager
def serving(server: _CountingServer) -> Iterator[_CountingServer]:
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hangs_up() -> Iterator[_CountingServer]:
    with serving(_CountingServer(hang_up=True)) as server:
        yield server


@pytest.fixture
def over_tls(tmp_path: Path) -> Iterator[tuple[_CountingServer, ssl.SSLContext]]:
    """A keep-alive server over TLS with a self-signed certificate, and a context that trusts it."""
    server = _CountingServer(hang_up=False)
    trusted = serve_tls(server, tmp_path)
    with serving(server):
        yield server, trusted


def url_job(scheme: str, server: _CountingServer) -> FileJob:
    url = f"{scheme}://127.0.0.1:{server.server_port}/f"
    return FileJob(hashlib.sha256(FIRST).hexdigest(), len(FIRST), (UrlSource(url),), "f")


def test_a_kept_connection_the_server_closed_is_replaced_and_no_byte_is_lost_or_doubled(
    hangs_up: _CountingServer, store: Store, client: httpx2.Client
) -> None:
    job = url_job("http", hangs_up)
    options = DownloadOptions(min_segment=MiB, connections=2, retry=ONCE)  # 2 at a time

    assert Downloader(store, client, options=options).fetch(job) is True

    assert store.blob_path(job.sha256).read_bytes() == FIRST
    assert hangs_up.hung_up >= 1, "a request went on a kept connection, which the server had closed"
    pieces = len(plan_pieces(len(FIRST), 2, MiB))
    assert hangs_up.answered == pieces, "each piece asked once more on a new connection, answered once"
    assert hangs_up.sent == len(FIRST)


def test_pieces_over_tls_share_kept_connections_verified_with_the_clients_context(
    over_tls: tuple[_CountingServer, ssl.SSLContext], store: Store
) -> None:
    server, trusted = over_tls
    job = url_job("https", server)
    options = DownloadOptions(min_segment=MiB, connections=2, retry=ONCE)

    with httpx2.Client(verify=trusted) as client:
        assert Downloader(store, client, options=options, tls=trusted).fetch(job) is True

    assert store.blob_path(job.sha256).read_bytes() == FIRST
    assert server.answered == len(plan_pieces(len(FIRST), 2, MiB))
    assert server.accepted <= 2


def test_a_certificate_not_trusted_is_refused_on_a_kept_connection_too(
    over_tls: tuple[_CountingServer, ssl.SSLContext], store: Store, client: httpx2.Client
) -> None:
    server, _ = over_tls
    options = DownloadOptions(min_segment=MiB, connections=2, retry=ONCE)

    with pytest.raises(RemoteError, match="CERTIFICATE_VERIFY_FAILED"):
        Downloader(store, client, options=options).fetch(url_job("https", server))

    assert server.answered == 0


def test_a_url_a_proxy_applies_to_is_left_to_httpx2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("http_proxy", raising=False)
    kept = KeptConnections()

    assert kept.send(httpx2.Request("GET", "http://127.0.0.1:9/f"), 5.0) is None
    assert kept.opened == 0


def test_cut_ends_a_stalled_read_on_a_kept_connection_which_is_then_not_kept(
    mirror_root: MirrorRoot, mirror: MirrorServer, client: httpx2.Client
) -> None:
    job = hub_job(mirror_root, mirror, "a.gguf", FIRST)
    kept = KeptConnections()
    reader = job.sources[0].reader(job, Wire(client, 30.0, kept))
    mirror.faults.add("stall=30s,times=1,on=cdn")  # the first MiB, then 30 s of silence
    received: list[int] = []
    reading = threading.Event()

    def drain(body: Iterator[bytes | memoryview]) -> None:
        reading.set()
        with contextlib.suppress(Transient):
            received.extend(len(piece) for piece in body)

    began = time.monotonic()
    with reader.open(0, job.size) as body:
        assert kept.opened == 1, "the body comes on a kept connection"
        thread = threading.Thread(target=drain, args=(iter(body),))
        thread.start()
        wait_for(reading.is_set, "the reading thread")
        body.cut()
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert time.monotonic() - began < 5.0, "not the 30 s stall, nor the 30 s read timeout"
    assert sum(received) < job.size

    with reader.open(0, job.size) as body:
        assert b"".join(bytes(piece) for piece in body) == FIRST
    assert kept.opened == 2, "the cut connection was closed, not kept"


class _Answers(BaseHTTPRequestHandler):
    """Every GET of ``/f`` answered with the server's ``status`` and a chunked body (or, for a
    redirect, a Location to ``/g``, which serves ``FIRST`` as ``_Ranges`` does); counts each GET."""

    protocol_version = "HTTP/1.1"
    server: _StatusServer

    def do_GET(self) -> None:
        with self.server.guard:
            self.server.asked.append(self.path)
        if self.path == "/g":
            _Ranges.do_GET(self)  # type: ignore[arg-type]
            return
        self.send_response(self.server.status)
        if 300 <= self.server.status < 400:
            self.send_header("Location", "/g")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"5\r\nbusy!\r\n0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        """Quiet."""


class _StatusServer(_CountingServer):
    def __init__(self, status: int) -> None:
        super().__init__(hang_up=False, handler=_Answers)
        self.status = status
        self.asked: list[str] = []


def test_an_error_answer_on_a_kept_connection_is_not_asked_again(store: Store, client: httpx2.Client) -> None:
    """A 503 with a chunked body is refused on its status: the GET is not sent a second time
    through httpx2, which would double a throttled server's load."""
    server = _StatusServer(503)
    with serving(server):
        options = DownloadOptions(min_segment=MiB, connections=2, retry=ONCE)
        with pytest.raises(RemoteError, match="503"):
            Downloader(store, client, options=options).fetch(url_job("http", server))

    assert server.asked == ["/f"]


def test_a_url_that_redirects_is_asked_once_more_at_most_then_straight_through_httpx2(
    store: Store, client: httpx2.Client
) -> None:
    server = _StatusServer(302)
    with serving(server):
        options = DownloadOptions(min_segment=MiB, connections=1, retry=ONCE)
        assert Downloader(store, client, options=options).fetch(url_job("http", server)) is True

    pieces = len(plan_pieces(len(FIRST), 1, MiB))
    assert store.blob_path(hashlib.sha256(FIRST).hexdigest()).read_bytes() == FIRST
    assert server.asked.count("/f") == pieces + 1, "the first piece's GET twice, then once a piece"
    assert server.asked.count("/g") == pieces


def test_a_finished_body_s_handle_no_longer_reaches_its_connection_once_it_is_kept_again(
    hangs_up: _CountingServer,
) -> None:
    """A transfer's halt may cut a body that has just ended: its connection, back in the pool,
    may already carry another piece, which the cut must not reach."""
    served = _CountingServer(hang_up=False)
    with serving(served):
        kept = KeptConnections()
        request = httpx2.Request(
            "GET", f"http://127.0.0.1:{served.server_port}/f", headers={"Range": "bytes=0-9"}
        )
        response = kept.send(request, 5.0)
        assert response is not None
        assert b"".join(bytes(p) for p in response.iter_raw()) == FIRST[:10]
        response.close()

        assert response.extensions["network_stream"].get_extra_info("socket") is None
        again = kept.send(request, 5.0)
        assert again is not None
        assert again.extensions["network_stream"].get_extra_info("socket") is not None
        again.close()
    assert kept.opened == 1, "the same connection, under a new handle"


def test_a_downloader_for_a_callers_client_sends_every_byte_through_it(
    store: Store, client: httpx2.Client
) -> None:
    assert Downloader(store, client, keep_alive=False).wire.kept is None
