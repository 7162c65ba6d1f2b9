"""The checkpoints of one transfer (``transfer``): the pieces' written and flushed bytes, and the two
clocks that record them for a resume (``pieces`` says what survives what).

The record clock records the written bytes often and cheaply (``record_due_in``); the flush clock
flushes the partial file and records it durable at most every ``checkpoint_seconds``. A clock that
fails hands its error to the transfer, which stops and raises it in the caller's thread.
"""

from __future__ import annotations

import contextlib
import errno
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from alex_models._platform import flush
from alex_models._units import human_size
from alex_models.errors import UserError
from alex_models.sources import Blob


@dataclass
class Segment:
    """One piece of a file: ``[start, end)``, of which ``done`` bytes are written and the first
    ``durable`` flushed (``pieces`` says what survives what)."""

    start: int
    end: int
    done: int = 0
    durable: int = 0

    @property
    def position(self) -> int:
        return self.start + self.done

    @property
    def remaining(self) -> int:
        return self.end - self.position


@contextlib.contextmanager
def no_space_named(job: Blob, partial: Path) -> Iterator[None]:
    """A full disk, a quota or a file-size limit met inside: a ``UserError`` naming the bytes and
    the place; any other ``OSError`` as it is.

    The partial file and its last checkpoint stay in ``tmp/``: the next run with space resumes.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            needed = f"{human_size(job.size)} needed in {partial.parent}"
            raise UserError(
                f"no space for {job.label}: {needed} ({exc.strerror})",
                hint="free some space (alex-models gc) or point ALEX_MODELS_HOME at a larger disk",
            ) from None
        raise


class Clocks(Protocol):
    """The options the checkpoints read (``transfer.Tuning`` has them)."""

    @property
    def checkpoint_seconds(self) -> float: ...

    @property
    def record_bytes(self) -> int: ...

    @property
    def record_seconds(self) -> float: ...


class Recorder(Protocol):
    """What the checkpoints need from the downloader (``transfer.Host`` has it). Called from the
    transfer's threads."""

    @property
    def partial(self) -> Path:
        """The partial file, to name it when the disk is full."""
        ...

    def record(self, segments: list[Segment], *, durably: bool) -> None:
        """Record these pieces' written and durable bytes, for a resume to start from; ``durably``:
        so that the record itself survives a power loss."""

    def kept(self, done: int) -> None:
        """``done`` bytes of the partial file are recorded: what a resume would not fetch again."""


class Checkpoints:
    """The two checkpoint clocks of one transfer, over the pieces its workers write to ``fd``.

    ``changed`` is the transfer's condition: it guards the pieces and is notified on every write.
    ``halt`` stops the transfer when a clock fails; the error is then ``failure``.
    """

    def __init__(
        self,
        host: Recorder,
        tuning: Clocks,
        job: Blob,
        fd: int,
        segments: list[Segment],
        changed: threading.Condition,
        halt: Callable[[], None],
    ) -> None:
        self.host = host
        self.tuning = tuning
        self.job = job
        self.fd = fd
        self.segments = segments
        self.changed = changed
        self.halt = halt
        self.saved = sum(s.done for s in segments)
        """Written bytes in the last record, written at ``saved_at``."""
        self.saved_at = time.monotonic()
        self.saving = threading.Lock()
        """One record at a time, each from a fresh snapshot: a newer record never claims less."""
        self.failure: BaseException | None = None
        self.workers_done = threading.Event()
        self.clocks = [
            threading.Thread(
                target=self._checkpointing, args=(loop,), name=f"{name}-{job.sha256[:8]}", daemon=True
            )
            for name, loop in (("record", self._record_often), ("flush", self._flush_every))
        ]

    def start(self) -> None:
        """Start both clocks, and say what the last run had recorded."""
        for clock in self.clocks:
            clock.start()
        self.host.kept(self.saved)

    def finish(self) -> None:
        """The workers are done: stop both clocks and wait for them."""
        self.workers_done.set()
        with self.changed:
            self.changed.notify_all()
        for clock in self.clocks:
            clock.join()

    def keep(self) -> None:
        """After ``finish``, for an interrupted run: a durable checkpoint of what arrived, for the
        next run; none after a clock failed, whose error the transfer raises instead."""
        if self.failure is None:
            self._checkpoint(durably=True)

    def write_back(self) -> None:
        """After ``finish``, for a complete run: flush the last writes now, while the hasher
        catches up, not later in the promotion's fsync (a 2 GiB sync from nginx spent up to 0.5 s
        there). No record: the promotion removes it."""
        if self.failure is None:
            with no_space_named(self.job, self.host.partial):
                flush(self.fd, data_only=True)

    def _checkpointing(self, loop: Callable[[], None]) -> None:
        """Run one checkpoint clock until the workers are done; a failure stops the transfer."""
        try:
            loop()
        except BaseException as exc:  # handed to Transfer.run(), which raises it in the caller's thread
            if self.failure is None:
                self.failure = exc
            self.halt()

    def _record_often(self) -> None:
        """Record the written bytes as soon as ``record_due_in`` says so: no flush, so it can be often."""
        while True:
            with self.changed:
                while not self.workers_done.is_set():
                    unrecorded = sum(s.done for s in self.segments) - self.saved
                    due_in = record_due_in(unrecorded, time.monotonic() - self.saved_at, self.tuning)
                    if due_in == 0:
                        break
                    self.changed.wait(due_in)  # every write wakes it too
            if self.workers_done.is_set():
                return
            self._checkpoint(durably=False)

    def _flush_every(self) -> None:
        """Flush the partial file and record it durable soon after bytes are written, at most once
        per ``checkpoint_seconds``: the slow clock, which guards against a power loss and starts
        the write-back the final fsync needs."""
        while True:
            with self.changed:
                self.changed.wait_for(
                    lambda: self.workers_done.is_set() or any(s.done > s.durable for s in self.segments)
                )
            if self.workers_done.is_set():
                return
            self._checkpoint(durably=True)
            if self.workers_done.wait(self.tuning.checkpoint_seconds):
                return

    def _checkpoint(self, *, durably: bool) -> None:
        """Record the written bytes; ``durably``: flush them first, so that the record may claim
        them as durable, and make the record durable too."""
        with no_space_named(self.job, self.host.partial):
            if durably:
                with self.changed:
                    flushing = [s.done for s in self.segments]
                if all(s.durable >= done for s, done in zip(self.segments, flushing, strict=True)):
                    return
                flush(self.fd, data_only=True)  # outside the lock: cheap records go on meanwhile
            with self.saving:
                with self.changed:
                    if durably:
                        for segment, done in zip(self.segments, flushing, strict=True):
                            segment.durable = done
                    snapshot = [Segment(s.start, s.end, s.done, s.durable) for s in self.segments]
                written = sum(s.done for s in snapshot)
                if written == self.saved and not durably:
                    return
                self.host.record(snapshot, durably=durably)
                self.saved, self.saved_at = written, time.monotonic()
                self.host.kept(written)


def record_due_in(unrecorded: int, elapsed: float, tuning: Clocks) -> float | None:
    """Seconds until the progress record is due (0: now), ``unrecorded`` bytes written and
    ``elapsed`` seconds after the last one; None: not before more bytes are written.

    Every ``record_bytes`` on a fast link and every ``record_seconds`` on a slow one, so a kill
    loses little at any speed; but no sooner than a quarter of ``record_seconds`` after the last,
    which caps what records cost on the fastest link (0.3 ms of CPU each: 40 a second, 1 % of a
    core; a record per 2 MiB at 1 GB/s would cost 15 %), where that quarter is still little to lose.
    """
    if unrecorded <= 0:
        return None
    due = tuning.record_seconds / 4 if unrecorded >= tuning.record_bytes else tuning.record_seconds
    return max(0.0, due - elapsed)
