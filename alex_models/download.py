"""The downloader: one blob from a URL into the store, verified, resumable, in parallel ranges.

How one file is fetched:

* The file is split into segments (one per connection for a large file, one for a small one) and
  written with ``pwrite`` into a single preallocated ``tmp/<sha256>.part``; a per-connection speed
  limit on the server does not cap us.
* A hasher thread follows the contiguous written prefix of the file, so the SHA256 is ready
  moments after the last byte (no second pass over a finished file). On resume it rebuilds its
  state from the bytes already in the partial file.
* Progress (each segment's on-disk length) is checkpointed to ``tmp/<sha256>.json`` after an
  ``fdatasync``, by a thread of its own, soon after bytes are written and at most once per
  ``checkpoint_seconds``: a run killed at any moment resumes from the last checkpoint, with
  ``Range``, and loses about that much time. Workers never wait for the disk, and each flush
  also starts the write-back the final ``fsync`` needs. (A flush per 4 MiB, from the workers,
  cost 2.5 s per GiB here; one per half second costs nothing measurable.)
* Bodies are read from the connection in large pieces, not through h11's 64 KiB events (see
  ``_body``): user CPU per GiB went from 1.65 s to 0.95 s here.
* Transient failures (connection errors, timeouts, 408/429/5xx, a body cut short) are retried
  per segment with backoff and ``Retry-After``; the budget resets whenever bytes arrive.
* A server that ignores ``Range`` is detected (200 to a ranged request) and the file is fetched
  as one stream; a server that answers the wrong range or a wrong ``Content-Length`` is refused.
* The first piece goes alone: its answer says where the bytes are (the Hub's redirect to its CDN),
  and the other pieces go straight there, so a file costs one request to the API, not one per
  connection. That redirect also announces the file's SHA256 (``X-Linked-Etag``): when it is not
  the one the lock pins, the lock is wrong, not the transfer, and the fetch fails at once, before
  any body is sent.
* The result must match the lock's size and SHA256; a mismatch discards the bytes, retries once
  from scratch, then fails with exit 3. Only then is the blob promoted into ``blobs/``.
* ``Downloader.cancel()`` (Ctrl-C, SIGTERM) stops every transfer at its next chunk, retry wait or
  lock poll; each checkpoints what arrived, for the next run to resume.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpcore2
import httpx2
from filelock import Timeout

from alex_models._fs import atomic_write
from alex_models._retry import RetryPolicy, status_verdict
from alex_models.errors import IntegrityError, RemoteError, UserError
from alex_models.fetch import transport_verdict
from alex_models.store import Store

MiB = 1024 * 1024
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_PROGRESS_VERSION = 1
_PIECES_PER_CONNECTION = 8
"""More pieces keep the hasher closer behind the downloads; fewer cost fewer requests. A 2 GiB
file at 50 MB/s per connection: 6.4 s with 4 pieces per connection, 6.2 s with 8."""
_READ_SIZE = 256 * 1024
"""Bytes asked of the connection at once: few calls per MiB, and little memory per connection."""
_LOCK_POLL = 0.25
"""Seconds between looks at a blob lock another process holds: its progress, and a Ctrl-C."""
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileJob:
    """One blob to fetch: what it must be, where it comes from, how to name it in messages."""

    sha256: str
    size: int
    url: str
    label: str
    headers: Mapping[str, str] = field(default_factory=dict)
    """Sent with every request; httpx drops ``Authorization`` on a redirect to another origin."""
    model: str | None = None
    """The locked model that pins this file, to name it when the lock turns out wrong."""


class Progress(Protocol):
    """What the downloader reports; called from worker threads.

    ``waiting`` says another process holds the file, with the bytes it has checkpointed so far;
    it is called again about every ``_LOCK_POLL`` seconds until that process lets go.
    """

    def started(self, job: FileJob, already: int) -> None: ...

    def advanced(self, job: FileJob, received: int) -> None: ...

    def finished(self, job: FileJob) -> None: ...

    def waiting(self, job: FileJob, done: int) -> None: ...


class NoProgress:
    def started(self, job: FileJob, already: int) -> None:
        """Nothing to show."""

    def advanced(self, job: FileJob, received: int) -> None:
        """Nothing to show."""

    def finished(self, job: FileJob) -> None:
        """Nothing to show."""

    def waiting(self, job: FileJob, done: int) -> None:
        """Nothing to show."""


class Cancelled(Exception):
    """``Downloader.cancel()`` stopped this fetch; what arrived is checkpointed for the next run."""


class _Transient(Exception):
    """A failure worth retrying: the next attempt may well succeed."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _RangesIgnored(Exception):
    """The server answered a ranged request with the whole file."""


@dataclass
class _Segment:
    start: int
    end: int
    done: int = 0

    @property
    def position(self) -> int:
        return self.start + self.done

    @property
    def remaining(self) -> int:
        return self.end - self.position


@dataclass(frozen=True)
class DownloadOptions:
    connections: int = 8
    """Parallel range requests for one large file."""
    min_segment: int = 32 * MiB
    """A file is split only into pieces at least this large."""
    checkpoint_seconds: float = 0.5
    """How often the bytes written so far are flushed and recorded for a resume."""
    chunk: int = MiB
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    read_timeout: float = 60.0
    """Seconds without a byte from the server before a request is given up (and retried)."""


class Downloader:
    """Fetches blobs into a store. Safe to use from several threads, and from several processes
    on one store: a file lock per blob makes the second fetcher wait and reuse the result."""

    def __init__(
        self,
        store: Store,
        client: httpx2.Client,
        *,
        options: DownloadOptions | None = None,
        progress: Progress | None = None,
        check: Callable[[Path, FileJob], None] | None = None,
    ) -> None:
        self.store = store.init()
        self.client = client
        self.options = options or DownloadOptions()
        self.progress = progress or NoProgress()
        self._check = check
        self._cancelled = threading.Event()
        self._guard = threading.Lock()
        self._transfers: set[_Transfer] = set()
        self._kept: dict[str, int] = {}

    def cancel(self) -> None:
        """Stop every fetch soon: transfers at their next chunk (checkpointing what arrived), retry
        waits and lock waits at once. Each ``fetch`` in flight then raises ``Cancelled``."""
        self._cancelled.set()
        with self._guard:
            transfers = list(self._transfers)
        for transfer in transfers:
            transfer.halt()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    @property
    def kept(self) -> int:
        """Bytes of unfinished fetches this downloader saved in ``tmp/``: where the next run resumes."""
        with self._guard:
            return sum(self._kept.values())

    def fetch(self, job: FileJob) -> bool:
        """Make sure the blob is in the store; True if it was downloaded, False if already there."""
        with self._blob_locked(job) as waited:
            if self.store.has_blob(job.sha256, job.size):
                if waited:
                    self.progress.finished(job)  # the other process stored it
                return False
            try:
                actual = self._download(job)
            except _LockDisagrees:
                self._discard_partial(job)  # named after a SHA256 this file does not have
                raise
            if actual != job.sha256:
                # Wrong bytes: never kept. One more try from scratch, then a hard failure.
                self._discard_partial(job)
                actual = self._download(job)
            if actual != job.sha256:
                self._discard_partial(job)
                raise IntegrityError(
                    f"{job.label}: downloaded bytes have SHA256 {actual}, the lock says {job.sha256}",
                    hint="the server sent wrong bytes twice and nothing was stored; check the endpoint",
                )
            partial = self.store.partial_path(job.sha256)
            if self._check is not None:
                try:
                    self._check(partial, job)
                except BaseException:
                    self._discard_partial(job)
                    raise
            self.store.promote(partial, job.sha256)
            self.set_kept(job, None)
        self.progress.finished(job)
        return True

    @contextlib.contextmanager
    def _blob_locked(self, job: FileJob) -> Iterator[bool]:
        """The blob's file lock, polled so that a wait shows the other process's progress and ends
        on ``cancel()``; yields whether another process held it first."""
        lock = self.store.blob_lock(job.sha256)
        waited = False
        while True:
            if self._cancelled.is_set():
                raise Cancelled(job.label)
            try:
                lock.acquire(timeout=_LOCK_POLL)
                break
            except Timeout:
                waited = True
                segments = self._load_progress(job)
                self.progress.waiting(job, sum(s.done for s in segments or ()))
        try:
            yield waited
        finally:
            lock.release()

    def set_kept(self, job: FileJob, done: int | None) -> None:
        with self._guard:
            if done is None:
                self._kept.pop(job.sha256, None)
            else:
                self._kept[job.sha256] = done

    def track(self, transfer: _Transfer, running: bool) -> None:
        with self._guard:
            if running:
                self._transfers.add(transfer)
            else:
                self._transfers.discard(transfer)
        if running and self._cancelled.is_set():
            transfer.halt()  # cancelled while it was being set up

    def _discard_partial(self, job: FileJob) -> None:
        self.store.partial_path(job.sha256).unlink(missing_ok=True)
        self.store.progress_path(job.sha256).unlink(missing_ok=True)
        self.set_kept(job, None)

    def _download(self, job: FileJob) -> str:
        if self._cancelled.is_set():
            raise Cancelled(job.label)
        partial = self.store.partial_path(job.sha256)
        segments = self._load_progress(job) if partial.exists() else None
        if segments is None:
            segments = self._plan(job.size)
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _reserve(fd, job, partial)
            transfer = _Transfer(self, job, fd, segments)
            self.progress.started(job, sum(s.done for s in segments))
            try:
                return transfer.run()
            except _RangesIgnored:
                # One stream from the start: the only way to read a server that ignores Range.
                transfer = _Transfer(self, job, fd, [_Segment(0, job.size)])
                return transfer.run()
        finally:
            os.close(fd)

    def _plan(self, size: int) -> list[_Segment]:
        """Pieces that ``connections`` workers take in file order, each a ranged request.

        Bytes then arrive roughly in order and the hasher keeps up. With one segment per
        connection it could only pass the first segment's end when that was done, and on a
        capped link hashed seven eighths of the file after the last byte arrived.
        """
        if size == 0:
            return [_Segment(0, 0)]
        per_piece = -(-size // (self.options.connections * _PIECES_PER_CONNECTION))
        step = max(self.options.min_segment, per_piece)
        return [_Segment(start, min(start + step, size)) for start in range(0, size, step)]

    def _load_progress(self, job: FileJob) -> list[_Segment] | None:
        try:
            record = json.loads(self.store.progress_path(job.sha256).read_text(encoding="utf-8"))
            if record["version"] != _PROGRESS_VERSION or record["size"] != job.size:
                return None
            segments = [_Segment(int(s), int(e), int(d)) for s, e, d in record["segments"]]
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None
        # A record that does not tile the file exactly is not ours to trust: start over.
        expected_start = 0
        for segment in segments:
            if segment.start != expected_start or not 0 <= segment.done <= segment.end - segment.start:
                return None
            expected_start = segment.end
        return segments if expected_start == job.size else None

    def save_progress(self, job: FileJob, segments: list[_Segment]) -> None:
        record = {
            "version": _PROGRESS_VERSION,
            "sha256": job.sha256,
            "size": job.size,
            "segments": [[s.start, s.end, s.done] for s in segments],
        }
        atomic_write(self.store.progress_path(job.sha256), json.dumps(record).encode())


def _reserve(fd: int, job: FileJob, partial: Path) -> None:
    """Give the partial file its full size now, so a full disk fails here, not mid-download."""
    try:
        if os.fstat(fd).st_size != job.size:
            os.ftruncate(fd, job.size)
        if hasattr(os, "posix_fallocate") and job.size:
            os.posix_fallocate(fd, 0, job.size)
    except OSError as exc:
        _raise_if_no_space(exc, job, partial)
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate
            raise


def _raise_if_no_space(exc: OSError, job: FileJob, partial: Path) -> None:
    """A full disk, a quota or a file-size limit: a ``UserError`` naming the bytes and the place.

    The partial file and its last checkpoint stay in ``tmp/``: the next run with space resumes.
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        raise UserError(
            f"no space for {job.label}: {job.size} bytes needed in {partial.parent} ({exc.strerror})",
            hint="free some space (alex-models gc) or point ALEX_MODELS_HOME at a larger disk",
        ) from None


class _LockDisagrees(IntegrityError):
    """The server announced another SHA256 for the file than the lock pins, before sending it."""


def _announced_sha256(headers: httpx2.Headers) -> str | None:
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


class _Transfer:
    """One attempt at one file: segment workers, the hasher, checkpoints."""

    def __init__(self, downloader: Downloader, job: FileJob, fd: int, segments: list[_Segment]) -> None:
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

    def run(self) -> str:
        """The SHA256 of the whole file once every piece is written; ``Cancelled`` if cancelled."""
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
            raise Cancelled(self.job.label)
        hasher.join()
        return self.digest.hexdigest()

    def _run_workers(self, pending: list[_Segment]) -> None:
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

    def _worker(self, segment: _Segment, lead: bool) -> None:
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

    def _stream(self, segment: _Segment) -> None:
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
                    raise _RangesIgnored
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
        announced = _announced_sha256(response.headers)
        if announced is None or announced == self.job.sha256:
            return
        fix = (
            f"restore models.lock from git or run 'alex-models lock --upgrade-model {self.job.model}'"
            if self.job.model
            else "check the SHA256 it was asked for"
        )
        raise _LockDisagrees(
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

    def _write(self, segment: _Segment, data: bytearray) -> None:
        if len(data) > segment.remaining:
            raise RemoteError(f"{self.job.label}: the server sent more bytes than the file has")
        try:
            os.pwrite(self.fd, data, segment.position)
        except OSError as exc:
            _raise_if_no_space(exc, self.job, self.downloader.store.partial_path(self.job.sha256))
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

    def _check_length(self, response: httpx2.Response, expected: int, segment: _Segment) -> None:
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
            snapshot = [_Segment(s.start, s.end, s.done) for s in self.segments]
        written = sum(s.done for s in snapshot)
        if written == self.saved:
            return
        # The snapshot is taken before the flush, so only bytes known to be on disk are recorded.
        try:
            os.fdatasync(self.fd)
            self.downloader.save_progress(self.job, snapshot)
        except OSError as exc:
            _raise_if_no_space(exc, self.job, self.downloader.store.partial_path(self.job.sha256))
            raise
        self.saved = written
        self.downloader.set_kept(self.job, written)
