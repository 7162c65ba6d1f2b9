"""What the mirror's HTTP layer and its Hub routes pass each other: the parsed request, the
answer, an error in the Hub's shape, and the record of a finished request."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from alex_models.mirror.catalogue import Catalogue
from alex_models.mirror.faults import Faults
from alex_models.mirror.repos import RepoFile

Origin = Literal["api", "cdn"]
CacheOutcome = Literal["hit", "miss"]


class Mirror(Protocol):
    """What the HTTP layer and the routes need of the server (``server.MirrorServer``), so that
    neither imports it back."""

    source: Catalogue
    faults: Faults
    page_size: int
    expand_page_size: int

    @property
    def url(self) -> str: ...

    def sign(self, repo: str, commit: str, path: str, expires: int) -> str: ...

    def cdn_location(self, request_host: str | None, repo: str, commit: str, path: str) -> str: ...

    def record(self, record: RequestRecord) -> None: ...

    def request_started(self) -> None:
        """A request is being answered (``record`` says when it is done)."""
        ...

    @property
    def draining(self) -> bool:
        """The server is stopping: answers finish, then each connection closes."""
        ...

    def metrics_text(self) -> str: ...


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it. Never holds a token, only whether one came."""

    method: str
    origin: Origin
    path: str
    query: str
    range: str | None
    status: int
    bytes_sent: int
    """Body bytes written to the socket (0 for HEAD)."""
    authorization: bool
    faults: tuple[str, ...] = ()
    cache: CacheOutcome | None = None
    """For a file body: served from the catalogue's bytes (hit) or missing there (miss)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Response:
    """An answer: status, headers, and a body in memory or a slice of a file."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: RepoFile | None = None
    """When set, the body is this file's bytes ``[start, start + length)``."""
    start: int = 0
    length: int = 0


class HubError(Exception):
    """An error answer in the Hub's shape: status, ``X-Error-Code``, message."""

    def __init__(
        self, status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def response(self) -> Response:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Error-Message": header_text(self.message),
            **self.headers,
        }
        if self.code is not None:
            headers["X-Error-Code"] = self.code
        return Response(self.status, headers, json_body({"error": self.message}))


def json_body(value: object) -> bytes:
    """Compact JSON, as the Hub sends it."""
    return json.dumps(value, separators=(",", ":")).encode()


def header_text(text: str) -> str:
    """``text`` as printable ASCII, other characters backslash-escaped: messages echo request paths,
    and a CR/LF, NUL or non-Latin-1 character there would split, break or crash the header block."""
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)


def http_number(text: str) -> int | None:
    """``text`` as HTTP writes a number (ASCII digits, nothing else), else None. ``str.isdigit``
    also takes "\u00b2", which ``int`` refuses, and ``int`` raises past 4300 digits."""
    if not (text.isascii() and text.isdigit()) or len(text) > 4000:
        return None
    return int(text)


def iso_date(date: datetime) -> str:
    """A date as the Hub writes it: ISO 8601 with milliseconds and ``Z``."""
    return date.strftime("%Y-%m-%dT%H:%M:%S.") + f"{date.microsecond // 1000:03d}Z"


@dataclass
class HubRequest:
    """A request, parsed once: the routes read this, never the raw handler."""

    method: str
    origin: Origin
    path: str
    query_string: str
    segments: list[str]
    query: dict[str, list[str]]
    token: str | None
    host: str | None
    range_header: str | None
    form: dict[str, Any] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    """Names of the faults applied to this request, for the log."""
    scope: Literal["api", "resolve", "cdn"] = "api"
    cache: CacheOutcome | None = None

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")
