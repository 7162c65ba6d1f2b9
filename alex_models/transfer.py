"""One attempt at one file, for ``download.Downloader``: the pieces' workers, the retries and the
hasher that follows them (see ``download``); ``checkpoints`` records what they wrote.

The first piece goes alone and finds the file: it asks the job's sources in order, and a source
that does not have the file passes it to the next. The other pieces then read from the source
that had it. What a source's answers must say is the source's concern (``alex_models.sources``).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from alex_models._futures import results_or_first_error
from alex_models._platform import read_at, write_at
from alex_models._retry import RetryPolicy
from alex_models._units import MiB
from alex_models.checkpoints import Checkpoints, Clocks, Recorder, Segment, no_space_named
from alex_models.errors import RemoteError
from alex_models.sources import Blob, Body, Missing, Source, Transient, Wire


class NotFound(RemoteError):
    """No source has the file (or the one that had it no longer does)."""


class RangesIgnored(Exception):
    """``source`` answered a ranged request with the whole file."""

    def __init__(self, source: Source) -> None:
        super().__init__(source.name)
        self.source = source


class Tuning(Clocks, Protocol):
    """The options a transfer reads (``download.DownloadOptions`` has them)."""

    @property
    def connections(self) -> int: ...

    @property
    def chunk(self) -> int: ...

    @property
    def retry(self) -> RetryPolicy: ...


class Host(Recorder, Protocol):
    """What a transfer needs from the downloader that runs it, for one file. Called from the
    transfer's threads."""

    @property
    def options(self) -> Tuning: ...

    @property
    def wire(self) -> Wire: ...

    def wrote(self, received: int) -> None:
        """``received`` more bytes are in the partial file."""

    def running(self, transfer: Transfer, running: bool) -> None:
        """The transfer starts (to be halted on cancel, at once if already cancelled) or ends."""


class Transfer:
    """One attempt at one file: segment workers, the hasher, checkpoints."""

    def __init__(
        self, host: Host, job: Blob, fd: int, segments: list[Segment], sources: Sequence[Source]
    ) -> None:
        self.host = host
        self.options = host.options
        self.job = job
        self.fd = fd
        self.segments = segments
        self.sources = list(sources)
        self.readers = [source.reader(job, host.wire) for source in sources]
        self.current = 0
        """The source asked: the first piece moves on while sources lack the file, then it is fixed."""
        self.misses: list[Missing] = []
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.located = threading.Event()
        """Set once the first piece's answer said where the bytes are (or the transfer stopped)."""
        self.answers: set[Body] = set()
        """Bodies being read, cut by ``halt``."""
        self.checkpoints = Checkpoints(host, host.options, job, fd, segments, self.changed, self.halt)
        self.digest = hashlib.sha256()
        self.hashed = 0

    def halt(self) -> None:
        """Stop the pieces in flight at their next chunk (a stalled one at once), and every wait."""
        self.stop.set()
        self.located.set()
        with self.changed:
            self.changed.notify_all()
            answers = list(self.answers)
        for body in answers:
            body.cut()

    def run(self) -> str | None:
        """The SHA256 of the whole file once every piece is written; None if halted by a cancel
        (what arrived is checkpointed)."""
        pending = [s for s in self.segments if s.remaining > 0]
        hasher = threading.Thread(target=self._hash, name=f"hash-{self.job.sha256[:8]}", daemon=True)
        hasher.start()
        self.checkpoints.start()
        self.host.running(self, running=True)
        try:
            self._run_workers(pending)
        except BaseException:
            self.halt()
            raise
        finally:
            self.host.running(self, running=False)
            self.checkpoints.finish()
            if self.stop.is_set():
                self.checkpoints.keep()  # an interrupted run keeps what arrived, for the next one
            else:
                self.checkpoints.write_back()
        if self.checkpoints.failure is not None:
            raise self.checkpoints.failure
        if self.stop.is_set():  # only a cancel halts a transfer that did not fail
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
            # On a failure the pieces in flight stop at their next chunk.
            results_or_first_error(futures, on_failure=self.halt)

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
                chunk = read_at(self.fd, min(4 * MiB, target - self.hashed), self.hashed)
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
            except Transient as exc:
                if self.stop.is_set():
                    return  # halted: its connection was cut on purpose
                if segment.done > before:
                    failures = 0  # the connection was doing its job; the budget starts again
                failures += 1
                if failures >= self.options.retry.attempts:
                    raise RemoteError(
                        f"{self.job.label}: gave up on {self.sources[self.current].name} "
                        f"after {failures} failed attempts: {exc}",
                        hint="check the network and HF_ENDPOINT, then run the same command again: it "
                        "resumes; 'alex-models sync --offline' uses only the store",
                    ) from None
                self.options.retry.pause(self.options.retry.delay(failures, exc.retry_after), self.stop)

    def _stream(self, segment: Segment) -> None:
        whole_file = segment.start == 0 and segment.end == self.job.size
        with contextlib.ExitStack() as stack:
            body = self._open(stack, segment)
            with self.changed:
                self.answers.add(body)
            stack.callback(self._forget, body)
            if self.stop.is_set():
                return  # halted while it was being asked for
            self.located.set()
            if body.whole:
                if not whole_file:
                    raise RangesIgnored(self.sources[self.current])
                segment.done = 0  # the source restarted from byte 0: so do we
            pending = bytearray()
            flushed = time.monotonic()
            try:
                for piece in body:
                    if self.stop.is_set():
                        return
                    if not pending and len(piece) >= self.options.chunk:
                        self._write(segment, piece)  # already large: written as it came, not copied
                        flushed = time.monotonic()
                        continue
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
            raise Transient(f"the body ended {segment.remaining} bytes early")

    def _open(self, stack: contextlib.ExitStack, segment: Segment) -> Body:
        """The body of the segment's remaining bytes, from the source that has the file: the first
        piece asks each source in turn until one has it; the others ask that one."""
        while True:
            try:
                return stack.enter_context(self.readers[self.current].open(segment.position, segment.end))
            except Missing as missing:
                self.misses.append(missing)
                if self.located.is_set() or self.current + 1 == len(self.readers):
                    raise self._not_found() from None
                self.current += 1

    def _not_found(self) -> NotFound:
        """No source has the file (or the one that had it no longer does): what each answered."""
        last = self.misses[-1]
        if self.located.is_set() or len(self.misses) == 1:
            return NotFound(f"{self.job.label}: {last.message}", hint=last.hint)
        answers = "; ".join(miss.message for miss in self.misses)
        return NotFound(f"{self.job.label}: no source has it: {answers}", hint=last.hint)

    def _forget(self, body: Body) -> None:
        with self.changed:
            self.answers.discard(body)

    def _write(self, segment: Segment, data: bytes | bytearray | memoryview) -> None:
        if len(data) > segment.remaining:
            raise RemoteError(
                f"{self.job.label}: {self.sources[self.current].name} sent more bytes than the file has"
            )
        with no_space_named(self.job, self.host.partial):
            write_at(self.fd, data, segment.position)
        with self.changed:
            segment.done += len(data)
            self.changed.notify_all()
        self.host.wrote(len(data))
