"""The downloader: one blob from its sources into the store, verified, resumable, in parallel ranges.

A job names the blob (SHA256, size) and its sources in order (``alex_models.sources``: the Hub, a
plain URL, a folder laid out like the store). Everything below except the wire checks is the same
whatever the source: the per-blob lock, verification and promotion are here; the plan of pieces,
the resume record and the reserved space in ``pieces``; the pieces' workers, retries and hasher in
``transfer``, their checkpoints in ``checkpoints``; each kind of source checks its own answers in
``sources``.

How one file is fetched:

* The file is split into segments (one per connection for a large file, one for a small one) and
  written with ``pwrite`` into a single preallocated ``tmp/<sha256>.part``; a per-connection speed
  limit on the server does not cap us.
* A hasher thread follows the contiguous written prefix of the file, so the SHA256 is ready
  moments after the last byte (no second pass over a finished file). On resume it rebuilds its
  state from the bytes already in the partial file.
* Progress (each segment's written and flushed length) is recorded in ``tmp/<sha256>.json`` on two
  clocks, by threads of their own (``pieces`` says what survives a kill and what a power loss):
  the written bytes every ``record_bytes`` or ``record_seconds`` without a flush, so a run killed
  at any moment resumes with ``Range`` and loses a few MB at any speed; an ``fdatasync`` and a
  durable record soon after bytes are written and at most once per ``checkpoint_seconds``. Workers
  never wait for the disk, and each flush also starts the write-back the final ``fsync`` needs.
  (A flush per 4 MiB, from the workers, cost 2.5 s per GiB here; one per half second costs
  nothing measurable.)
* Bodies are read from the connection in large pieces, not through h11's 64 KiB events (see
  ``sources.http._read``): user CPU per GiB went from 1.65 s to 0.95 s here.
* Transient failures (connection errors, timeouts, 408/429/5xx, a body cut short) are retried
  per segment with backoff and ``Retry-After``; the budget resets whenever bytes arrive.
* A server that ignores ``Range`` is detected (200 to a ranged request) and the file is fetched
  as one stream; a server that answers the wrong range or a wrong ``Content-Length`` is refused
  (``sources.http``).
* The first piece goes alone. It asks the sources in order; one that lacks the file (404, no such
  file) passes it to the next, and only when none has it does the fetch fail, naming each. Its
  answer also says where the bytes are (the Hub's redirect to its CDN), and the other pieces go
  straight there, so a file costs one request to the API, not one per connection. That redirect
  announces the file's SHA256 (``X-Linked-Etag``): when it is not the one the lock pins, the lock
  is wrong, not the transfer, and the fetch fails at once, before any body is sent
  (``sources.hub``).
* The result must match the lock's size and SHA256; a mismatch discards the bytes and asks the
  next source (a warning names the bad one); a job's only source is retried once from scratch.
  With no source left, it fails with exit 3. Only then is the blob promoted into ``blobs/``.
* ``Downloader.cancel()`` (Ctrl-C, SIGTERM) stops every transfer at its next chunk, retry wait or
  lock poll; each checkpoints what arrived, for the next run to resume.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx2
from filelock import Timeout

from alex_models._platform import open_fd
from alex_models._retry import RetryPolicy
from alex_models._units import MiB
from alex_models.checkpoints import Segment
from alex_models.errors import IntegrityError
from alex_models.pieces import load_record, plan_pieces, reserve, save_record
from alex_models.sources import LockDisagrees, Source, Wire
from alex_models.sources.keepalive import KeptConnections
from alex_models.store import Store
from alex_models.transfer import NotFound, RangesIgnored, Transfer, Tuning

_LOCK_POLL = 0.25
"""Seconds between looks at a blob lock another process holds: its progress, and a Ctrl-C."""


@dataclass(frozen=True)
class FileJob:
    """One blob to fetch: what it must be, where it comes from, how to name it in messages."""

    sha256: str
    size: int
    sources: tuple[Source, ...]
    """Asked in order: the first that has the blob serves it."""
    label: str
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
    """A ``Progress`` that shows nothing (the API's default)."""

    def started(self, job: FileJob, already: int) -> None:
        """Nothing to show."""

    def advanced(self, job: FileJob, received: int) -> None:
        """Nothing to show."""

    def finished(self, job: FileJob) -> None:
        """Nothing to show."""

    def waiting(self, job: FileJob, done: int) -> None:
        """Nothing to show."""


class _WrongBytes(Exception):
    """A source said or showed that it holds other bytes than the blob (another size)."""

    def __init__(self, source: Source, error: IntegrityError) -> None:
        super().__init__(error.message)
        self.source = source
        self.error = error


class Cancelled(Exception):
    """``Downloader.cancel()`` stopped this fetch; what arrived is checkpointed for the next run."""


@dataclass(frozen=True)
class DownloadOptions:
    """How the downloader works a file: connections, piece size, checkpoints, retries, timeouts."""

    connections: int = 8
    """Parallel range requests for one large file."""
    min_segment: int = 32 * MiB
    """A file is split only into pieces at least this large, but for its last round (one piece per
    connection), cut in quarters so the connections finish together (``pieces.plan_pieces``)."""
    checkpoint_seconds: float = 0.5
    """How often the bytes written so far are flushed and recorded as durable (a power loss keeps them)."""
    record_bytes: int = 2 * MiB
    """Written bytes (all connections together) after which they are recorded for a resume, no
    flush: what a kill may lose on a fast link (``checkpoints.record_due_in``)."""
    record_seconds: float = 0.1
    """Seconds after which written bytes are recorded however few: what a kill may lose on a slow link."""
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
        warn: Callable[[str], None] | None = None,
        tls: ssl.SSLContext | None = None,
        keep_alive: bool = True,
    ) -> None:
        """``tls`` is the TLS configuration ``client`` was made with (its ``verify``) when that is not
        httpx2's default: the connections kept across pieces (``KeptConnections``) verify with it.
        ``keep_alive`` False sends every request through ``client``, for a client with settings of
        its own (a proxy, a CA, credentials, transports) that the kept connections would not have."""
        self.store = store.init()
        self.options = options or DownloadOptions()
        kept = KeptConnections(tls, trust_env=client.trust_env) if keep_alive else None
        self.wire = Wire(client, self.options.read_timeout, kept)
        """Lent to the sources: one connection pool for every HTTP source, and the connections the
        downloader keeps itself for file bodies."""
        self.progress = progress or NoProgress()
        self._check = check
        self._warn = warn or (lambda message: None)
        """Told when a source sent wrong bytes and the next one is asked."""
        self._cancelled = threading.Event()
        self._guard = threading.Lock()
        self._transfers: set[Transfer] = set()
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
            self._download_verified(job)
            partial = self.store.partial_path(job.sha256)
            if self._check is not None:
                try:
                    self._check(partial, job)
                except BaseException:
                    self._discard_partial(job)
                    raise
            self.store.promote(partial, job.sha256)
            self._set_kept(job, None)
        self.progress.finished(job)
        return True

    def _download_verified(self, job: FileJob) -> None:
        """Leave the right bytes in the partial file, or fail: wrong bytes are never kept.

        A source whose bytes are wrong (another size, another SHA256) is named in a warning and
        the next source serves the blob; a job's only source gets one more try from scratch. With
        no source left, exit 3 naming what each sent.
        """
        sources = job.sources
        wrong: list[str] = []
        while True:
            try:
                actual, used = self._download(job, sources)
                problem = (
                    None if actual == job.sha256 else f"sent bytes with SHA256 {actual}, not {job.sha256}"
                )
            except LockDisagrees:
                self._discard_partial(job)  # named after a SHA256 this file does not have
                raise
            except NotFound as none:
                if not wrong:
                    raise
                self._discard_partial(job)  # the sources after a bad one lack the file
                raise _none_right(job, [*wrong, none.message.removeprefix(f"{job.label}: ")]) from None
            except _WrongBytes as bad:
                actual, used, problem = None, bad.source, bad.error.message.removeprefix(f"{job.label}: ")
                if len(job.sources) == 1:
                    self._discard_partial(job)
                    raise bad.error from None  # a source that says so at once is not asked again
            if problem is None:
                return
            self._discard_partial(job)
            wrong.append(f"{used.name}: {problem}")
            rest = sources[sources.index(used) + 1 :]
            if rest:
                self._warn(f"{job.label}: {used.name}: {problem}; nothing stored, trying {rest[0].name}")
                sources = rest
            elif len(job.sources) == 1 and len(wrong) == 1:
                continue  # one source: perhaps a fluke of the transfer, so once more from scratch
            elif len(job.sources) == 1:
                raise IntegrityError(
                    f"{job.label}: downloaded bytes have SHA256 {actual}, the lock says {job.sha256}",
                    hint="the server sent wrong bytes twice and nothing was stored; check the endpoint",
                )
            else:
                raise _none_right(job, wrong)

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
                segments = load_record(self.store, job)
                self.progress.waiting(job, sum(s.done for s in segments or ()))
        try:
            yield waited
        finally:
            lock.release()

    def _set_kept(self, job: FileJob, done: int | None) -> None:
        with self._guard:
            if done is None:
                self._kept.pop(job.sha256, None)
            else:
                self._kept[job.sha256] = done

    def _track(self, transfer: Transfer, running: bool) -> None:
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
        self._set_kept(job, None)

    def _download(self, job: FileJob, sources: tuple[Source, ...]) -> tuple[str, Source]:
        """The SHA256 of what ``sources`` (in order, the first that has it) sent, and which did."""
        if self._cancelled.is_set():
            raise Cancelled(job.label)
        partial = self.store.partial_path(job.sha256)
        segments = load_record(self.store, job) if partial.exists() else None
        if segments is None:
            segments = plan_pieces(job.size, self.options.connections, self.options.min_segment)
        fd = open_fd(partial, os.O_RDWR | os.O_CREAT)
        try:
            reserve(fd, job, partial)
            host = _Host(self, job)
            self.progress.started(job, sum(s.done for s in segments))
            transfer = Transfer(host, job, fd, segments, sources)
            try:
                try:
                    digest = transfer.run()
                except RangesIgnored as ignored:
                    # One stream from the start: the only way to read a server that ignores Range.
                    transfer = Transfer(host, job, fd, [Segment(0, job.size)], [ignored.source])
                    digest = transfer.run()
            except LockDisagrees:
                raise
            except IntegrityError as error:  # the source holds another size than the lock pins
                raise _WrongBytes(transfer.sources[transfer.current], error) from None
        finally:
            os.close(fd)
        if digest is None:
            raise Cancelled(job.label)
        return digest, transfer.sources[transfer.current]


@dataclass(frozen=True)
class _Host:
    """The downloader as one file's transfers see it (``transfer.Host``)."""

    downloader: Downloader
    job: FileJob

    @property
    def options(self) -> Tuning:
        return self.downloader.options

    @property
    def wire(self) -> Wire:
        return self.downloader.wire

    @property
    def partial(self) -> Path:
        return self.downloader.store.partial_path(self.job.sha256)

    def wrote(self, received: int) -> None:
        self.downloader.progress.advanced(self.job, received)

    def record(self, segments: list[Segment], *, durably: bool) -> None:
        save_record(self.downloader.store, self.job, segments, durably=durably)

    def kept(self, done: int) -> None:
        self.downloader._set_kept(self.job, done)

    def running(self, transfer: Transfer, running: bool) -> None:
        self.downloader._track(transfer, running)


def _none_right(job: FileJob, answers: list[str]) -> IntegrityError:
    """Exit 3: sources sent wrong bytes, and no other had the file."""
    return IntegrityError(
        f"{job.label}: no source has the locked bytes ({'; '.join(answers)})",
        hint="nothing was stored; delete the damaged copies and push them again, or sync from the Hub",
    )
