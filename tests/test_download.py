"""The downloader against the real mirror: ranges, resume, retries, lying servers, verify-then-promote."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx2
import pytest
from helpers import serve_tls

from alex_models._retry import RetryPolicy
from alex_models._units import MiB
from alex_models.download import (
    Cancelled,
    Downloader,
    DownloadOptions,
    FileJob,
    NoProgress,
)
from alex_models.errors import IntegrityError, RemoteError, UserError
from alex_models.fetch import new_client
from alex_models.ggufinfo import NotGGUFError, check_gguf
from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord
from alex_models.pieces import plan_pieces
from alex_models.sources import HubSource, UrlSource
from alex_models.sources.hub import announced_sha256
from alex_models.store import Store

REPO = "org/model"
FAST_RETRY = RetryPolicy(attempts=5, base=0.01)
SMALL = hashlib.shake_256(b"small").digest(200_000)
LARGE = hashlib.shake_256(b"large").digest(6 * MiB)
HUGE = hashlib.shake_256(b"huge").digest(8 * MiB)


@pytest.fixture
def publish(mirror_root: MirrorRoot, mirror: MirrorServer) -> Callable[..., FileJob]:
    """Commit ``data`` as ``path`` of ``repo`` in the mirror and return the job that fetches it."""

    def make(data: bytes, path: str = "model.gguf", *, repo: str = REPO, token: str | None = None) -> FileJob:
        commit = mirror_root.commit(repo, {path: data})
        return FileJob(
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            sources=(HubSource(mirror.url, repo, commit, path, token),),
            label=f"{repo}/{path}",
        )

    return make


def downloader(
    store: Store,
    client: httpx2.Client,
    *,
    retry: RetryPolicy = FAST_RETRY,
    min_segment: int = DownloadOptions.min_segment,
    connections: int = DownloadOptions.connections,
) -> Downloader:
    options = DownloadOptions(retry=retry, min_segment=min_segment, connections=connections)
    return Downloader(store, client, options=options)


def cdn_gets(log: list[RequestRecord]) -> list[RequestRecord]:
    return [r for r in log if r.origin == "cdn" and r.method == "GET"]


def range_start(record: RequestRecord) -> int:
    match = re.fullmatch(r"bytes=(\d+)-\d*", record.range or "")
    assert match is not None, record
    return int(match[1])


def settled(mirror: MirrorServer, count: int) -> list[RequestRecord]:
    """The log once ``count`` successful CDN GETs are in it (records land just after the last byte)."""
    return mirror.wait_log(lambda log: sum(r.status in (200, 206) for r in cdn_gets(log)) >= count)


def cdn_log(mirror: MirrorServer, count: int) -> list[RequestRecord]:
    """The CDN GETs once ``count`` are logged; a failed request's record may land after the next one's."""
    return cdn_gets(mirror.wait_log(lambda log: len(cdn_gets(log)) >= count))


def assert_nothing_stored(store: Store, job: FileJob) -> None:
    assert not store.blob_path(job.sha256).exists()
    assert list(store.blobs()) == []


def assert_stored(store: Store, job: FileJob, data: bytes) -> None:
    blob = store.blob_path(job.sha256)
    assert blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) & 0o222 == 0, "a blob is read-only"
    assert list((store.home / "tmp").iterdir()) == []


# -- the ordinary path ------------------------------------------------------------------------------


def test_clean_fetch_stores_read_only_blob_and_cleans_tmp(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client
) -> None:
    job = publish(SMALL)

    assert downloader(store, client).fetch(job) is True

    assert_stored(store, job, SMALL)


def test_second_fetch_returns_false_without_a_request(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(SMALL)
    downloader(store, client).fetch(job)
    settled(mirror, 1)
    mirror.clear_log()

    assert downloader(store, client).fetch(job) is False

    assert mirror.log == []


def test_large_file_is_fetched_as_pieces_in_several_ranges(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(LARGE)

    assert downloader(store, client, min_segment=MiB, connections=4).fetch(job) is True

    assert_stored(store, job, LARGE)
    log = settled(mirror, 18)
    gets = cdn_gets(log)
    assert all(r.status == 206 for r in gets)
    spans = sorted((range_start(r), int(r.range.rsplit("-", 1)[1])) for r in gets if r.range)
    # Two pieces of min_segment, then the last 4 MiB (one round of 4 connections) in quarters.
    assert len(gets) == len(spans) == len(set(spans)) == 2 + 16
    # The ranges tile the file: each starts where the previous ended.
    assert spans[0][0] == 0
    assert spans[-1][1] == len(LARGE) - 1
    assert all(prev[1] + 1 == nxt[0] for prev, nxt in itertools.pairwise(spans))


def test_later_pieces_go_straight_to_the_cdn_without_the_token(
    publish: Callable[..., FileJob],
    mirror_root: MirrorRoot,
    store: Store,
    client: httpx2.Client,
    mirror: MirrorServer,
) -> None:
    mirror_root.create_repo("org/private", private=True, tokens=["hf_secret"])
    job = publish(LARGE, repo="org/private", token="hf_secret")

    assert downloader(store, client, min_segment=MiB, connections=1).fetch(job) is True

    assert_stored(store, job, LARGE)
    log = settled(mirror, len(plan_pieces(len(LARGE), 1, MiB)))
    resolves = [r for r in log if r.origin == "api" and "/resolve/" in r.path]
    assert len(resolves) == 1, "one redirect, remembered for the other pieces"
    assert resolves[0].authorization
    assert not any(r.authorization for r in cdn_gets(log))


def test_a_file_in_pieces_costs_one_resolve_request_whatever_the_connections(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(LARGE)
    mirror.faults.add("latency=200ms,on=resolve")  # every connection starts before the first answer

    assert downloader(store, client, min_segment=MiB, connections=4).fetch(job) is True

    assert_stored(store, job, LARGE)
    pieces = len(plan_pieces(len(LARGE), 4, MiB))
    log = settled(mirror, pieces)
    assert len([r for r in log if "/resolve/" in r.path]) == 1, "the first piece asks; the others follow"
    assert [r.status for r in cdn_gets(log)] == [206] * pieces


@pytest.mark.parametrize(
    ("header", "announced"),
    [
        (f'"{"ab" * 32}"', "ab" * 32),
        (f'W/"{"AB" * 32}"', "ab" * 32),  # weak, upper case
        ("ab" * 32, "ab" * 32),  # unquoted
        (f'"{"ab" * 20}"', None),  # a git blob id: a non-LFS file, not its SHA256
        ('"not-a-hash"', None),
        ("", None),
    ],
)
def test_the_sha256_the_hub_announces_is_read_robustly(header: str, announced: str | None) -> None:
    assert announced_sha256(httpx2.Headers({"X-Linked-Etag": header})) == announced


def test_an_expired_cdn_address_is_asked_for_again(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(LARGE)

    class RotateKeyOnce(NoProgress):
        """Once the first bytes are written, every CDN address handed out so far stops working."""

        rotated = False

        def advanced(self, job: FileJob, received: int) -> None:
            if not self.rotated:
                mirror._signing_key = secrets.token_bytes(32)
                self.rotated = True

    options = DownloadOptions(min_segment=MiB, connections=1)
    assert Downloader(store, client, options=options, progress=RotateKeyOnce()).fetch(job) is True

    assert_stored(store, job, LARGE)
    log = settled(mirror, len(plan_pieces(len(LARGE), 1, MiB)))
    assert [r.status for r in cdn_gets(log)].count(403) == 1
    assert len([r for r in log if r.origin == "api" and "/resolve/" in r.path]) == 2


def test_zero_byte_file(publish: Callable[..., FileJob], store: Store, client: httpx2.Client) -> None:
    job = publish(b"", "empty.gguf")

    assert downloader(store, client).fetch(job) is True

    assert_stored(store, job, b"")


# -- resume -----------------------------------------------------------------------------------------


def test_dropped_connection_resumes_in_process_with_range(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(HUGE)
    mirror.faults.add("drop-after=3MB,times=1,on=cdn")

    assert downloader(store, client).fetch(job) is True

    assert_stored(store, job, HUGE)
    gets = cdn_log(mirror, 2)
    assert len(gets) == 2
    [dropped] = [r for r in gets if r.faults == ("drop-after",)]
    [resumed] = [r for r in gets if r is not dropped]
    assert dropped.range is None
    assert dropped.bytes_sent == 3_000_000
    assert range_start(resumed) == dropped.bytes_sent, "every byte that arrived is kept"
    assert sum(r.bytes_sent for r in gets) == len(HUGE)


def test_bytes_that_arrived_before_a_read_timeout_are_kept(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(LARGE)  # one piece, one connection
    mirror.faults.add("stall=1s,times=1,on=cdn")  # 1 MiB, then silent past the read timeout
    options = DownloadOptions(retry=FAST_RETRY, read_timeout=0.3)

    assert Downloader(store, client, options=options).fetch(job) is True

    assert_stored(store, job, LARGE)
    gets = cdn_log(mirror, 2)
    [stalled] = [r for r in gets if r.faults == ("stall",)]
    [resumed] = [r for r in gets if r is not stalled]
    assert range_start(resumed) == MiB, "the bytes received before the silence are kept"


def test_a_link_dropping_every_900kb_still_advances(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(HUGE[: 4 * MiB])
    mirror.faults.add("drop-after=900KB,on=cdn")  # every response, each shorter than one write chunk

    # Two attempts in a row without progress would be fatal: each drop must count as progress.
    assert downloader(store, client, retry=RetryPolicy(attempts=2, base=0.01)).fetch(job) is True

    assert_stored(store, job, HUGE[: 4 * MiB])
    gets = cdn_log(mirror, 5)
    assert len(gets) == 5
    assert sorted(range_start(r) for r in gets if r.range) == list(range(900_000, 4 * MiB, 900_000))


def test_second_downloader_resumes_a_failed_fetch(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(HUGE)
    mirror.faults.add("drop-after=3MB,times=1,on=cdn")
    with pytest.raises(RemoteError, match=r"gave up on .* after 1 failed attempt"):
        downloader(store, client, retry=RetryPolicy(attempts=1, base=0.01)).fetch(job)
    assert store.partial_path(job.sha256).exists()
    record = json.loads(store.progress_path(job.sha256).read_text(encoding="utf-8"))
    assert [done for _, _, done in record["segments"]] == [3_000_000]
    assert_nothing_stored(store, job)

    with new_client() as fresh_client:
        assert downloader(Store(store.home), fresh_client).fetch(job) is True

    assert_stored(store, job, HUGE)
    gets = cdn_log(mirror, 2)
    assert len(gets) == 2
    [resumed] = [r for r in gets if not r.faults]
    assert range_start(resumed) == 3_000_000, "the new downloader starts where the record says"
    assert sum(r.bytes_sent for r in gets) < 1.5 * len(HUGE)


# -- servers that lie -------------------------------------------------------------------------------


def test_ignored_range_falls_back_to_one_stream(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(LARGE)
    mirror.faults.add("ignore-range,on=cdn")

    assert downloader(store, client, min_segment=MiB, connections=4).fetch(job) is True

    assert_stored(store, job, LARGE)
    gets = cdn_gets(settled(mirror, 1))
    assert any(r.range is not None and r.status == 200 for r in gets), "a ranged request got the whole file"
    [stream] = [r for r in gets if r.range is None]
    assert stream.status == 200
    assert stream.bytes_sent == len(LARGE)


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("wrong-range,on=cdn", r"asked for bytes \d+-\d+, the server answered 'bytes \d+-\d+/\d+'"),
        ("bad-length,on=cdn", r"the server announced \d+ bytes for a \d+-byte range"),
        ("redirect-loop", r"TooManyRedirects"),
    ],
)
def test_lying_server_is_refused(
    publish: Callable[..., FileJob],
    store: Store,
    client: httpx2.Client,
    mirror: MirrorServer,
    fault: str,
    message: str,
) -> None:
    job = publish(LARGE)
    mirror.faults.add(fault)

    with pytest.raises(RemoteError, match=message) as caught:
        downloader(store, client, min_segment=MiB, connections=4).fetch(job)

    assert caught.value.exit_code == 4
    assert job.label in str(caught.value)
    assert_nothing_stored(store, job)


def test_corrupt_once_is_retried_from_scratch(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(SMALL)
    mirror.faults.add("corrupt,times=1,on=cdn")

    assert downloader(store, client).fetch(job) is True

    assert_stored(store, job, SMALL)
    gets = cdn_log(mirror, 2)
    assert len(gets) == 2
    assert all(r.range is None for r in gets), "the second try starts from scratch"
    assert sorted(r.faults for r in gets) == [(), ("corrupt",)]


def test_always_corrupt_is_an_integrity_error_naming_both_hashes(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    data = SMALL[:1000]
    job = publish(data)
    mirror.faults.add("corrupt,on=cdn")
    # The mirror flips the first byte of every 64 KiB block: in 1000 bytes, only the first.
    served = hashlib.sha256(bytes([data[0] ^ 0xFF]) + data[1:]).hexdigest()

    with pytest.raises(IntegrityError) as caught:
        downloader(store, client).fetch(job)

    assert caught.value.exit_code == 3
    assert job.sha256 in caught.value.message
    assert served in caught.value.message
    assert_nothing_stored(store, job)
    assert not store.partial_path(job.sha256).exists()
    assert not store.progress_path(job.sha256).exists()


# -- transient answers ------------------------------------------------------------------------------


def test_503_is_retried(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(SMALL)
    mirror.faults.add("status=503,times=2,on=cdn")

    assert downloader(store, client).fetch(job) is True

    assert_stored(store, job, SMALL)
    assert sorted(r.status for r in cdn_log(mirror, 3)) == [200, 503, 503]


def test_429_is_retried_after_retry_after(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(SMALL)
    mirror.faults.add("rate-limit=1,times=1,on=cdn")
    waits: list[float] = []

    assert downloader(store, client, retry=replace(FAST_RETRY, sleep=waits.append)).fetch(job) is True

    assert_stored(store, job, SMALL)
    assert sorted(r.status for r in cdn_log(mirror, 2)) == [200, 429]
    assert waits == [1.0], "Retry-After: 1 is honoured (the backoff alone would wait under 0.1 s)"


# -- tokens -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("private", "token", "status"),
    [
        (True, None, 401),  # a private repo, anonymously
        (False, "hf_known_elsewhere", 403),  # a gated repo, with a token it does not accept
    ],
)
def test_access_denied_asks_for_hf_token(
    publish: Callable[..., FileJob],
    mirror_root: MirrorRoot,
    store: Store,
    client: httpx2.Client,
    private: bool,
    token: str | None,
    status: int,
) -> None:
    mirror_root.create_repo("other/repo", tokens=["hf_known_elsewhere"])
    mirror_root.create_repo(REPO, private=private, gated=False if private else "manual", tokens=["hf_x"])
    job = publish(SMALL, token=token)

    with pytest.raises(UserError, match=f"answered {status}") as caught:
        downloader(store, client).fetch(job)

    assert "HF_TOKEN" in str(caught.value)
    assert_nothing_stored(store, job)


def test_token_goes_to_the_api_and_never_to_the_cdn(
    publish: Callable[..., FileJob],
    mirror_root: MirrorRoot,
    store: Store,
    client: httpx2.Client,
    mirror: MirrorServer,
) -> None:
    mirror_root.create_repo(REPO, private=True, tokens=["hf_x"])
    job = publish(SMALL, token="hf_x")

    assert downloader(store, client).fetch(job) is True

    log = mirror.wait_log(lambda log: {(r.origin, r.status) for r in log} >= {("api", 302), ("cdn", 200)})
    api = [r for r in log if r.origin == "api"]
    cdn = [r for r in log if r.origin == "cdn"]
    assert api
    assert cdn
    assert all(r.authorization for r in api)
    assert not any(r.authorization for r in cdn)


# -- cancel (Ctrl-C, SIGTERM) -------------------------------------------------------------------------


def test_cancel_stops_a_stalled_transfer_at_once_and_keeps_what_arrived(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(LARGE)
    mirror.faults.add("stall=30s,on=cdn")  # the first chunk, then 30 s of silence
    arrived = threading.Event()

    class Arrived(NoProgress):
        def advanced(self, job: FileJob, received: int) -> None:
            arrived.set()

    # Every piece written as it arrives: once one is, the connection is in its stall.
    options = DownloadOptions(retry=FAST_RETRY, checkpoint_seconds=0)
    fetcher = Downloader(store, client, options=options, progress=Arrived())
    outcome: list[BaseException] = []

    def fetch() -> None:
        try:
            fetcher.fetch(job)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    assert arrived.wait(10), "no byte arrived"
    cancelled = time.monotonic()

    fetcher.cancel()
    thread.join(timeout=20)

    assert not thread.is_alive()
    assert time.monotonic() - cancelled < 5.0  # not the 30 s stall, nor the 60 s read timeout
    assert [type(exc) for exc in outcome] == [Cancelled]
    done = json.loads(store.progress_path(job.sha256).read_text(encoding="utf-8"))["segments"][0][2]
    assert 0 < done < job.size
    assert fetcher.kept == done
    assert store.partial_path(job.sha256).read_bytes()[:done] == LARGE[:done]
    assert not store.blob_path(job.sha256).exists()


# -- concurrency and checks -------------------------------------------------------------------------


def test_two_threads_fetching_one_blob_download_it_once(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client, mirror: MirrorServer
) -> None:
    job = publish(SMALL)
    holding = threading.Event()  # the first fetch has the bytes, and its blob lock
    waited = threading.Event()  # the second fetch has found that lock held

    class Waits(NoProgress):
        def waiting(self, job: FileJob, done: int) -> None:
            waited.set()

    def hold(partial: Path, checked: FileJob) -> None:
        """Runs under the first fetch's blob lock: keep it until the second fetch has hit it."""
        holding.set()
        waited.wait(timeout=10)

    results: list[bool] = []
    errors: list[BaseException] = []

    def fetch(downloader: Downloader) -> None:
        try:
            results.append(downloader.fetch(job))
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=fetch, args=(Downloader(store, client, check=hold),))
    first.start()
    assert holding.wait(timeout=10), "the first fetch took the blob lock and downloaded"
    second = threading.Thread(target=fetch, args=(Downloader(store, client, progress=Waits()),))
    second.start()
    for thread in (first, second):
        thread.join(timeout=10)

    assert waited.is_set(), "the second fetch ran into the lock the first one held"
    assert errors == []
    assert sorted(results) == [False, True]
    assert len(cdn_gets(settled(mirror, 1))) == 1
    assert_stored(store, job, SMALL)


def test_check_hook_sees_the_partial_before_promotion(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client
) -> None:
    job = publish(SMALL)
    seen: list[tuple[Path, bytes, bool]] = []

    def check(path: Path, checked: FileJob) -> None:
        seen.append((path, path.read_bytes(), store.blob_path(checked.sha256).exists()))

    assert Downloader(store, client, check=check).fetch(job) is True

    assert seen == [(store.partial_path(job.sha256), SMALL, False)]
    assert_stored(store, job, SMALL)


def test_failing_check_leaves_nothing_stored(
    publish: Callable[..., FileJob], store: Store, client: httpx2.Client
) -> None:
    job = publish(SMALL, "fake.gguf")

    def check(path: Path, checked: FileJob) -> None:
        check_gguf(path, "fake.gguf", label=checked.label)

    with pytest.raises(NotGGUFError, match="is not a GGUF file"):
        Downloader(store, client, check=check).fetch(job)

    assert_nothing_stored(store, job)
    assert list((store.home / "tmp").iterdir()) == []


# -- TLS --------------------------------------------------------------------------------------------


class _RangeFileHandler(BaseHTTPRequestHandler):
    """Serves ``server.payload`` at any path, honouring one ``Range``, as a CDN does."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        payload: bytes = self.server.payload  # type: ignore[attr-defined]
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        start, end = (int(match[1]), int(match[2])) if match else (0, len(payload) - 1)
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(payload)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(payload[start : end + 1])

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_pieces_arrive_intact_over_tls(store: Store, tmp_path: Path) -> None:
    # The Hub's CDN is HTTPS: the body is then read through TLS (HTTP/1.0 here: no connection kept).
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RangeFileHandler)
    server.payload = LARGE  # type: ignore[attr-defined]
    trusted = serve_tls(server, tmp_path)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    job = FileJob(
        hashlib.sha256(LARGE).hexdigest(),
        len(LARGE),
        (UrlSource(f"https://127.0.0.1:{server.server_port}/f"),),
        "tls",
    )
    try:
        with httpx2.Client(verify=trusted) as client:
            options = DownloadOptions(min_segment=MiB, connections=3)
            assert Downloader(store, client, options=options, tls=trusted).fetch(job) is True
    finally:
        server.shutdown()
        server.server_close()

    assert_stored(store, job, LARGE)
