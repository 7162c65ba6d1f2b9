"""The seam between the downloader and the places bytes come from.

A *source* is where a blob (a SHA256 and a size) may be read: the Hub, a plain URL, a folder laid
out like the store. The downloader asks its job's sources in order; for one transfer each gives a
*reader*, which opens byte ranges of the blob as *bodies*. What a source checks is its own wire
(statuses, headers, redirects, credentials); what the bytes must be (size, SHA256), resume,
pieces, checkpoints and promotion are the downloader's, the same for every kind.

A source answers an ``open`` with a body, or raises:

* ``Missing``: it does not have the blob (an HTTP 404, no such file): the next source is asked;
* ``Transient``: worth another try (a dropped connection, a 503); the downloader retries it;
* ``LockDisagrees``: it says, before sending any byte, that the blob is other bytes than the lock
  pins (exit 3);
* another ``IntegrityError``: what it holds under that name has another size (a truncated copy):
  the downloader names it in a warning and asks the next source, as it does when a source's bytes
  turn out to have another SHA256;
* any other ``AlexModelsError``: a failure to report as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import httpx2

from alex_models.errors import IntegrityError


class Blob(Protocol):
    """What a source is asked for (``download.FileJob`` is one)."""

    @property
    def sha256(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def label(self) -> str:
        """How messages name the file: ``org/repo/path`` or the URL."""
        ...

    @property
    def model(self) -> str | None:
        """The locked model that pins the blob, to name it when the lock turns out wrong."""
        ...


class Kept(Protocol):
    """Connections kept across pieces (``keepalive.KeptConnections``)."""

    def send(self, request: httpx2.Request, read_timeout: float) -> httpx2.Response | None:
        """The answer to a GET whose body is file bytes, on a kept connection; None: httpx2's to send."""
        ...


@dataclass(frozen=True)
class Wire:
    """What the downloader lends every source for a transfer: one HTTP client (one connection pool
    for all HTTP sources), and how long a read may wait for a byte."""

    http: httpx2.Client
    read_timeout: float
    kept: Kept | None = None
    """Connections kept across pieces for the GETs of file bodies, where they apply; else all is httpx2's."""


class Body(Protocol):
    """Bytes of the blob from one ``open``, read by one thread; ``cut`` is called from another."""

    @property
    def whole(self) -> bool:
        """The body is the whole blob from byte 0, whatever range was asked (a server that ignores
        ``Range`` answers so); else it starts where asked."""
        ...

    def __iter__(self) -> Iterator[bytes | memoryview]:
        """The bytes in order; a piece may be a view of a buffer the next piece reuses."""
        ...

    def cut(self) -> None:
        """End a read that blocks (a stalled server) now; the iteration then stops or fails."""


class Reader(Protocol):
    """A source opened for one blob during one transfer: what it learns (where the Hub redirected)
    serves the transfer's next pieces."""

    def open(self, start: int, end: int) -> AbstractContextManager[Body]:
        """Bytes ``start`` to ``end`` (exclusive) of the blob; 0 to its size is the whole blob."""
        ...


class Source(Protocol):
    """A place a blob may be read from."""

    @property
    def name(self) -> str:
        """How messages and progress name it: ``https://huggingface.co``, ``file:///srv/models``."""
        ...

    def reader(self, blob: Blob, wire: Wire) -> Reader: ...


class Missing(Exception):
    """The source does not have the blob; the next source is asked.

    ``message`` names the source and what it answered; ``hint`` says what to check, when it is the
    last source.
    """

    def __init__(self, message: str, *, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class Transient(Exception):
    """A failure worth retrying: the next attempt may well succeed."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LockDisagrees(IntegrityError):
    """The source announced another SHA256 for the file than the lock pins, before sending it."""
