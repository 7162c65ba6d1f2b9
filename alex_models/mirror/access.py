"""Who may reach ``mirror serve --store``, and what its access log says about them.

Client tokens come from a file, one per line (``--token-file``); with them every repo is private
to their holders, checked on the API origin as the Hub checks ``Authorization: Bearer``. Without
a token file the store's weights would be readable by anyone who reaches the port, so the server
listens on loopback only, unless told ``--public``. The access log is one JSON object per request,
without tokens (a record never holds one) and without the CDN URLs' signatures; pull-through's
lines (a file fetched from upstream, or why not) go to the same log as objects with an ``event``.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from alex_models.errors import UsageError, UserError
from alex_models.mirror.messages import RequestRecord, iso_date
from alex_models.mirror.stderr import write_stderr

_SECRET_PARAMS = frozenset({"sig"})
"""Query parameters an access log leaves out: a CDN URL's signature lets whoever reads it fetch
the file until it expires."""


def read_token_file(path: Path) -> frozenset[str]:
    """The tokens in ``path``: one per line; blank lines and lines starting with ``#`` are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(
            f"cannot read the token file {path}: {exc.strerror or exc}",
            hint="give --token-file a readable file with one client token per line",
        ) from None
    tokens = frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )
    if not tokens:
        raise UserError(
            f"the token file {path} holds no token, so no client could download",
            hint="write one client token per line (for instance: openssl rand -hex 32 >> FILE)",
        )
    if any(any(c.isspace() or not c.isprintable() for c in token) for token in tokens):
        raise UserError(
            f"a line of the token file {path} holds a space or a control character",
            hint="write one token per line, nothing else on the line",
        )
    return tokens


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as given to ``--host``) only listens to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name or an address that others may reach


def check_exposure(host: str, *, tokens: bool, public: bool) -> None:
    """Refuse to serve the store beyond this machine to anyone at all, unless told so."""
    if tokens or public or is_loopback(host):
        return
    raise UsageError(
        f"--host {host} would serve the store's weights to anyone who reaches it, with no token asked",
        hint="add --token-file FILE (clients send one of its tokens as HF_TOKEN), "
        "or --public if that is meant, or listen on 127.0.0.1",
    )


def _now(now: datetime | None) -> str:
    return iso_date(now or datetime.now(tz=UTC))


def event_line(event: str, message: str, now: datetime | None = None) -> str:
    """Something the mirror did that is not a request (``pull-through``), as a JSON line."""
    return json.dumps({"time": _now(now), "event": event, "message": message}, separators=(",", ":"))


def access_log_line(record: RequestRecord, now: datetime | None = None) -> str:
    """One request as a JSON line: no token (only whether one came), no signature."""
    query = urlencode(
        [(k, v) for k, v in parse_qsl(record.query, keep_blank_values=True) if k not in _SECRET_PARAMS]
    )
    entry = {
        "time": _now(now),
        "method": record.method,
        "origin": record.origin,
        "path": record.path,
        "query": query,
        "range": record.range,
        "status": record.status,
        "bytes": record.bytes_sent,
        "authorization": record.authorization,
        "cache": record.cache,
        "faults": list(record.faults),
    }
    return json.dumps(entry, separators=(",", ":"))


@contextmanager
def access_log(path: Path | None) -> Iterator[Callable[[str], None]]:
    """Where the log's JSON lines (``access_log_line``, ``event_line``) go: ``path`` (appended to,
    a line at a time), else stderr."""
    if path is None:
        yield write_stderr
        return
    lock = threading.Lock()
    try:
        sink = path.open("a", encoding="utf-8")
    except OSError as exc:
        raise UserError(
            f"cannot open the access log {path}: {exc.strerror or exc}",
            hint="give --access-log a writable file",
        ) from None

    def write(line: str) -> None:
        with lock:
            sink.write(line + "\n")
            sink.flush()

    with sink:
        yield write
