"""One attempt at one file, for ``download.Downloader``: the pieces' workers, the hasher that
follows them, the checkpoints, and what the server's answers must say (see ``download``)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpcore2
import httpx2

from alex_models._retry import status_verdict
from alex_models.errors import IntegrityError, RemoteError, UserError
from alex_models.fetch import transport_verdict

if TYPE_CHECKING:
    from alex_models.download import Downloader, DownloadOptions, FileJob

MiB = 1024 * 1024
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_READ_SIZE = 256 * 1024
"""Bytes asked of the connection at once: few calls per MiB, and little memory per connection."""
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class _Transient(Exception):
    """A failure worth retrying: the next attempt may well succeed."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RangesIgnored(Exception):
    """The server answered a ranged request with the whole file."""


@dataclass
class Segment:
    start: int
    end: int
    done: int = 0

    @property
    def position(self) -> int:
        return self.start + self.done

    @property
    def remaining(self) -> int:
        return self.end - self.position


def raise_if_no_space(exc: OSError, job: FileJob, partial: Path) -> None:
    """A full disk, a quota or a file-size limit: a ``UserError`` naming the bytes and the place.

    The partial file and its last checkpoint stay in ``tmp/``: the next run with space resumes.
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise UserError(
            f"no space for {job.label}: {job.size} bytes needed in {partial.parent} ({exc.strerror})",
            hint="free some space (alex-models gc) or point ALEX_MODELS_HOME at a larger disk",
        ) from None


class LockDisagrees(IntegrityError):
    """The server announced another SHA256 for the file than the lock pins, before sending it."""


def announced_sha256(headers: httpx2.Headers) -> str | None:
    """The file's SHA256 as the Hub announces it on ``resolve`` (``X-Linked-Etag: "<sha256>"``, a
    weak ``W/`` form too), or None: absent, or not a SHA256 (a git blob id, a CDN's own tag)."""
    value = headers.get("X-Linked-Etag", "").strip().removeprefix("W/").strip('"').strip().lower()
    return value if _SHA256_RE.fullmatch(value) else None


def _size_mismatch(job: FileJob, offered: int) -> IntegrityError:
    """The server offers a file of another size than the lock pins: these are not the locked bytes
    (a changed file, another endpoint, or an edited lock), which is an integrity failure."""
    return IntegrityError(
        f"{job.label}: the server offers {offered} bytes, the lock pins {job.size}",
        hint="nothing was stored; if models.lock was edited, restore it from git, else check HF_ENDPOINT",
    )


def _body(response: httpx2.Response, length: int, options: DownloadOptions) -> Iterator[bytes]:
    """The body of a download, read in large pieces straight from the connection where that is
    certainly the same bytes; otherwise through httpx.

    Through httpx every 64 KiB read passes h11's buffers in Python: about 0.7 s of user CPU per
    GiB here, of 1.65 s. A plain HTTP/1.1 body of a known length can be read from the
    connection's stream (httpcore's documented ``network_stream``; TLS is handled there) once
    h11 has handed over what it had buffered, which its first body event does: it always yields
    every buffered body byte. The connection is then closed, never reused, as h11 did not see
    the whole body.
    """
    stream = response.extensions.get("network_stream")
    plain = (
        response.http_version == "HTTP/1.1"
        and response.headers.get("Content-Length") == str(length)
        and "Transfer-Encoding" not in response.headers
        and response.headers.get("Content-Encoding", "identity").strip().lower() == "identity"
    )
    if stream is None or not plain:
        yield from response.iter_bytes()
        return
    # Not a for-loop with a break: leaving iter_raw closes the response, and the connection.
    raw = response.iter_raw()
    first = next(raw, b"")
    received = len(first)
    yield first
    try:
        while received < length:
            piece = stream.read(min(_READ_SIZE, length - received), timeout=options.read_timeout)
            if not piece:
                return  # the connection was closed early; the caller sees the shortfall
            received += len(piece)
            yield piece
    except httpcore2.TimeoutException as exc:
        raise _Transient(f"no byte for {options.read_timeout:g} s: {exc}") from None
    except httpcore2.NetworkError as exc:
        raise _Transient(f"the connection failed: {exc}") from None


def _cut(response: httpx2.Response) -> None:
    """End a read blocked on ``response`` (a stalled server) now: shut its socket down."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            # The plain socket's shutdown, also under TLS: an SSLSocket's own would drop the TLS
            # state that the reading thread is using.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Transfer:
    """One attempt at one file: segment workers, the hasher, checkpoints."""

    def __init__(self, downloader: Downloader, job: FileJob, fd: int, segments: list[Segment]) -> None:
        self.downloader = downloader
        self.options = downloader.options
        self.job = job
        self.fd = fd
        self.segments = segments
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.located = threading.Event()
        """Set once the first piece's answer said where the bytes are (or the transfer stopped)."""
        self.answers: set[httpx2.Response] = set()
        """Responses whose bodies are being read, cut by ``halt``."""
        self.saved = sum(s.done for s in segments)
        self.checkpoint_failure: BaseException | None = None
        self.source: tuple[str, Mapping[str, str]] = (job.url, job.headers)
        """Where pieces are asked for, and with which headers: the file's URL, or where it led."""
        self.digest = hashlib.sha256()
        self.hashed = 0

    def halt(self) -> None:
        """Stop the pieces in flight at their next chunk (a stalled one at once), and every wait."""
        self.stop.set()
        self.located.set()
        with self.changed:
            self.changed.notify_all()
            answers = list(self.answers)
        for response in answers:
            _cut(response)

    def run(self) -> str | None:
        """The SHA256 of the whole file once every piece is written; None if the downloader was
        cancelled (what arrived is checkpointed)."""
        pending = [s for s in self.segments if s.remaining > 0]
        hasher = threading.Thread(target=self._hash, name=f"hash-{self.job.sha256[:8]}", daemon=True)
        workers_done = threading.Event()
        checkpointer = threading.Thread(
            target=self._checkpoint_every,
            args=(workers_done,),
            name=f"save-{self.job.sha256[:8]}",
            daemon=True,
        )
        hasher.start()
        checkpointer.start()
        self.downloader.set_kept(self.job, self.saved)
        self.downloader.track(self, running=True)
        try:
            self._run_workers(pending)
        except BaseException:
            self.halt()
            raise
        finally:
            self.downloader.track(self, running=False)
            workers_done.set()
            with self.changed:
                self.changed.notify_all()
            checkpointer.join()
            if self.stop.is_set() and self.checkpoint_failure is None:
                self._checkpoint()  # an interrupted run keeps what arrived, for the next one
        if self.checkpoint_failure is not None:
            raise self.checkpoint_failure
        if self.downloader.cancelled and self.stop.is_set():
            return None
        hasher.join()
        return self.digest.hexdigest()

    def _run_workers(self, pending: list[Segment]) -> None:
        if not pending:
            return
        # The pool's queue is first in, first out: each free connection takes the next piece. The
        # first piece goes alone; the others wait until its answer says where the bytes are.
        with ThreadPoolExecutor(max_workers=min(self.options.connections, len(pending))) as pool:
            futures = [pool.submit(self._worker, segment, n == 0) for n, segment in enumerate(pending)]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failure = next((f.exception() for f in done if f.exception() is not None), None)
            if failure is not None:
                self.halt()  # the pieces in flight stop at their next chunk
                for future in futures:
                    future.cancel()
                wait(futures)
                raise failure

    # -- hashing: follow the contiguous written prefix -------------------------------------------

    def _frontier(self) -> int:
        frontier = 0
        for segment in self.segments:
            if segment.start > frontier:
                break
            frontier = segment.position
            if segment.remaining:
                break
        return frontier

    def _hash(self) -> None:
        while True:
            with self.changed:
                self.changed.wait_for(
                    lambda: (
                        self._frontier() > self.hashed or self.stop.is_set() or self.hashed >= self.job.size
                    ),
                    timeout=1.0,
                )
                target = self._frontier()
            if self.stop.is_set() or self.hashed >= self.job.size:
                return
            while self.hashed < target:
                chunk = os.pread(self.fd, min(4 * MiB, target - self.hashed), self.hashed)
                if not chunk:
                    return
                self.digest.update(chunk)
                self.hashed += len(chunk)

    # -- workers -------------------------------------------------------------------------------

    def _worker(self, segment: Segment, lead: bool) -> None:
        if not lead:
            self.located.wait()
        failures = 0
        while segment.remaining > 0 and not self.stop.is_set():
            before = segment.done
            try:
                self._stream(segment)
            except (_Transient, httpx2.TransportError) as exc:
                if self.stop.is_set():
                    return  # halted: its connection was cut on purpose
                if segment.done > before:
                    failures = 0  # the connection was doing its job; the budget starts again
                failures += 1
                if failures >= self.options.retry.attempts:
                    url = httpx2.URL(self.job.url)
                    origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
                    raise RemoteError(
                        f"{self.job.label}: gave up on {origin} after {failures} failed attempts: {exc}",
                        hint="check the network and HF_ENDPOINT, then run the same command again: it "
                        "resumes; 'alex-models sync --offline' uses only the store",
                    ) from None
                retry_after = exc.retry_after if isinstance(exc, _Transient) else transport_verdict(exc)[1]
                self.stop.wait(self.options.retry.delay(failures, retry_after))
            except httpx2.HTTPError as exc:  # not worth retrying: a redirect loop, a malformed URL, …
                raise RemoteError(
                    f"{self.job.label}: {type(exc).__name__}: {exc}",
                    hint="the endpoint misbehaves; check HF_ENDPOINT",
                ) from None

    def _stream(self, segment: Segment) -> None:
        whole_file = segment.start == 0 and segment.end == self.job.size
        url, sent = self.source
        headers = dict(sent)
        if segment.position > 0 or not whole_file:
            headers["Range"] = f"bytes={segment.position}-{segment.end - 1}"
        with self._get(url, headers) as response:
            if response.status_code >= 400 and url != self.job.url:
                # A remembered CDN address expired (signed URLs do): ask the file's own URL again.
                self.source = (self.job.url, self.job.headers)
                raise _Transient(f"{url.split('?', 1)[0]} answered {response.status_code}", retry_after=0)
            self._check_status(response)
            self._remember_redirect(url, response)
            self.located.set()
            if response.status_code == 200 and "Range" in headers:
                if not whole_file:
                    raise RangesIgnored
                segment.done = 0  # the server restarted from byte 0: so do we
            expected = segment.remaining
            self._check_length(response, expected, segment)
            pending = bytearray()
            flushed = time.monotonic()
            try:
                for piece in _body(response, expected, self.options):
                    if self.stop.is_set():
                        return
                    pending += piece
                    # Large writes on a fast link; on a slow one, bytes wait no longer than a
                    # fraction of a checkpoint interval, so a kill loses little.
                    now = time.monotonic()
                    if (
                        len(pending) >= self.options.chunk
                        or now - flushed >= self.options.checkpoint_seconds / 4
                    ):
                        self._write(segment, pending)
                        pending.clear()
                        flushed = now
            finally:
                # Bytes that arrived before a dropped connection are kept, so the retry resumes after
                # them: iter_bytes(chunk) would lose up to a chunk per drop, and a link that drops
                # more often than that would never advance.
                if pending and not self.stop.is_set():
                    self._write(segment, pending)
        if segment.remaining > 0:
            raise _Transient(f"the body ended {segment.remaining} bytes early")

    @contextlib.contextmanager
    def _get(self, url: str, headers: Mapping[str, str]) -> Iterator[httpx2.Response]:
        """The answer to a GET of ``url``, redirects followed; the first redirect is read before it
        is followed, as it announces the file's SHA256: a lock that pins other bytes fails here,
        before the CDN is asked for any."""
        client = self.downloader.client
        timeout = httpx2.Timeout(self.options.read_timeout, connect=min(10.0, self.options.read_timeout))
        request = client.build_request("GET", url, headers=headers, timeout=timeout)
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            self._check_announced(response)
            if response.next_request is not None:
                response.read()  # a few bytes ("Found. Redirecting to …"): the connection stays reusable
                response.close()
                response = client.send(response.next_request, stream=True, follow_redirects=True)
            with self.changed:
                self.answers.add(response)
            if self.stop.is_set():
                _cut(response)  # halted while it was being asked for
            yield response
        finally:
            with self.changed:
                self.answers.discard(response)
            response.close()

    def _check_announced(self, response: httpx2.Response) -> None:
        announced = announced_sha256(response.headers)
        if announced is None or announced == self.job.sha256:
            return
        fix = (
            f"restore models.lock from git or run 'alex-models lock --upgrade-model {self.job.model}'"
            if self.job.model
            else "check the SHA256 it was asked for"
        )
        raise LockDisagrees(
            f"{self.job.label}: the server says this file's SHA256 is {announced}, "
            f"the lock pins {self.job.sha256}",
            hint=f"the lock is wrong, not the download (nothing was downloaded); {fix}",
        )

    def _remember_redirect(self, url: str, response: httpx2.Response) -> None:
        """Send the next pieces straight where ``url`` redirected (the Hub's CDN), saving a request
        to the API each; without the token when that is another origin, as httpx does."""
        final = response.url
        if str(final) == url:
            return
        first = httpx2.URL(self.job.url)
        same_origin = (final.scheme, final.host, final.port) == (first.scheme, first.host, first.port)
        headers = {k: v for k, v in self.job.headers.items() if same_origin or k.lower() != "authorization"}
        self.source = (str(final), headers)

    def _write(self, segment: Segment, data: bytearray) -> None:
        if len(data) > segment.remaining:
            raise RemoteError(f"{self.job.label}: the server sent more bytes than the file has")
        try:
            os.pwrite(self.fd, data, segment.position)
        except OSError as exc:
            raise_if_no_space(exc, self.job, self.downloader.store.partial_path(self.job.sha256))
            raise
        with self.changed:
            segment.done += len(data)
            self.changed.notify_all()
        self.downloader.progress.advanced(self.job, len(data))

    def _check_status(self, response: httpx2.Response) -> None:
        status = response.status_code
        if status in (200, 206):
            return
        again, retry_after = status_verdict(status, response.headers)
        if again:
            raise _Transient(f"the server answered {status}", retry_after)
        url = str(response.url).split("?", 1)[0]
        if status in (401, 403):
            raise UserError(
                f"{self.job.label}: {url} answered {status}: access denied",
                hint="set HF_TOKEN to a token with access (for a gated repo, accept its terms first)",
            )
        raise RemoteError(f"{self.job.label}: {url} answered {status}", hint="is the lock for this endpoint?")

    def _check_length(self, response: httpx2.Response, expected: int, segment: Segment) -> None:
        if response.status_code == 206:
            match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match[1]) != segment.position or int(match[2]) >= segment.end:
                raise RemoteError(
                    f"{self.job.label}: asked for bytes {segment.position}-{segment.end - 1}, "
                    f"the server answered {response.headers.get('Content-Range')!r}",
                    hint="the server mishandles Range requests; nothing was stored",
                )
            if match[3] != "*" and int(match[3]) != self.job.size:
                raise _size_mismatch(self.job, int(match[3]))
            span = int(match[2]) - int(match[1]) + 1
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdecimal() and int(declared) != span:
                raise RemoteError(  # the server contradicts itself: a protocol error, not our bytes
                    f"{self.job.label}: the server announced {declared} bytes for a {span}-byte range",
                    hint="the server mishandles Range requests; nothing was stored",
                )
            return
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdecimal() and int(declared) != expected:
            raise _size_mismatch(self.job, int(declared) + segment.position)

    def _checkpoint_every(self, workers_done: threading.Event) -> None:
        """Checkpoint soon after bytes are written, at most once per ``checkpoint_seconds``, until
        the workers are done; a failure stops the transfer."""
        try:
            while True:
                with self.changed:
                    self.changed.wait_for(
                        lambda: workers_done.is_set() or sum(s.done for s in self.segments) > self.saved
                    )
                if workers_done.is_set():
                    return
                self._checkpoint()
                if workers_done.wait(self.options.checkpoint_seconds):
                    return
        except BaseException as exc:  # handed to run(), which raises it in the caller's thread
            self.checkpoint_failure = exc
            self.halt()

    def _checkpoint(self) -> None:
        with self.changed:
            snapshot = [Segment(s.start, s.end, s.done) for s in self.segments]
        written = sum(s.done for s in snapshot)
        if written == self.saved:
            return
        # The snapshot is taken before the flush, so only bytes known to be on disk are recorded.
        try:
            os.fdatasync(self.fd)
            self.downloader.save_progress(self.job, snapshot)
        except OSError as exc:
            raise_if_no_space(exc, self.job, self.downloader.store.partial_path(self.job.sha256))
            raise
        self.saved = written
        self.downloader.set_kept(self.job, written)
