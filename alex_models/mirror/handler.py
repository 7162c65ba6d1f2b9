"""The mirror's HTTP layer: one threaded server per origin, request parsing, and the bytes on the
wire (sendfile, or paced, cut or corrupted by the fault knobs). What to answer is the routes' job."""

from __future__ import annotations

import json
import re
import socket
import sys
import time
import traceback
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlsplit

from alex_models._platform import send_file
from alex_models.errors import UserError
from alex_models.mirror.faults import RequestInfo
from alex_models.mirror.messages import (
    HubError,
    HubRequest,
    Mirror,
    Origin,
    RequestRecord,
    Response,
    http_number,
)
from alex_models.mirror.routes import route
from alex_models.mirror.stderr import write_stderr

_SEND_CHUNK = 1024 * 1024
_CORRUPT_STRIDE = 64 * 1024  # the first byte of every 64 KiB block of a body is flipped
MAX_BODY = 1024 * 1024
"""The largest request body read: a paths-info form of some 10,000 paths. A larger one is refused
(413) before any of it is read, so no client makes a request thread hold what it announces."""
_CLOSE = {"Connection": "close"}
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(:[0-9]*)?")
"""RFC 3986's host (an IPv6 literal or a reg-name) and optional port: what a Host header may hold."""


class OriginServer(ThreadingHTTPServer):
    """One origin (the API or the CDN): a threaded HTTP server that knows its mirror."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, host: str, port: int, mirror: Mirror, origin: Origin) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.mirror = mirror
        self.origin: Origin = origin
        self.accepted = 0
        """Connections accepted (only the serving thread counts them)."""
        super().__init__((host, port), HubHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.accepted += 1
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal (a downloader stopping a range); anything else is shown."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class HubHandler(BaseHTTPRequestHandler):
    """Parses each request, asks the routes, writes the answer, and logs it."""

    protocol_version = "HTTP/1.1"
    server: OriginServer
    server_version = "alex-models-mirror"

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the mirror keeps its own structured request log."""

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        mirror = self.server.mirror
        mirror.request_started()
        try:
            request = parse_request(self, self.server.origin)
        except HubError as exc:  # a request we cannot read: answered and logged, never a traceback
            request, response = unparsed_request(self, self.server.origin), exc.response()
        else:
            response = self._answer(mirror, request)
        self._finish(mirror, request, response, self.headers)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a request line or header block it cannot read, a method with
        no ``do_``) in the Hub's shape, counted and logged like every other answer. Its headers are
        left out of the log: they may be the previous request's on this connection."""
        mirror = self.server.mirror
        mirror.request_started()
        reason = message or self.responses.get(code, ("Error", ""))[0]
        error = HubError(code, "BadRequest" if code == 400 else None, reason, _CLOSE)
        self._finish(mirror, unparsed_request(self, self.server.origin), error.response(), None)

    def handle_expect_100(self) -> bool:
        """Say "100 Continue" only to a body that will be read: a refused one gets its final answer
        at once (RFC 9110 §10.1.1 allows it), so the client never sends it."""
        try:
            body_length(self)
        except HubError:
            return True  # do_POST reads no body and answers the refusal
        return super().handle_expect_100()

    def _answer(self, mirror: Mirror, request: HubRequest) -> Response:
        try:
            return route(mirror, request, request.applied)
        except HubError as exc:
            return exc.response()
        except UserError as exc:  # a broken repo.json or refs.json in the root: the admin's to fix
            write_stderr(f"mirror: {exc}")  # the full path goes to the admin only
            return HubError(500, None, "Internal Error: the mirror's repository files are broken").response()
        except Exception:
            write_stderr(traceback.format_exc().rstrip("\n"))
            return HubError(500, None, "Internal Error").response()

    def _finish(
        self, mirror: Mirror, request: HubRequest, response: Response, headers: Message | None
    ) -> None:
        """Send ``response`` and log the request (``request_started`` was called for it)."""
        if mirror.draining:
            self.close_connection = True  # the server is stopping: no next request on this one
            response.headers["Connection"] = "close"
        applied = request.applied
        bytes_sent = 0
        try:
            bytes_sent = self._write(mirror, request, response, applied)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            self.close_connection = True
            bytes_sent = getattr(exc, "bytes_sent", 0)
        finally:
            mirror.record(
                RequestRecord(
                    method=request.method,
                    origin=self.server.origin,
                    path=request.path,
                    query=request.query_string,
                    range=None if headers is None else headers.get("Range"),
                    status=response.status,
                    bytes_sent=bytes_sent,
                    authorization=headers is not None and "Authorization" in headers,
                    faults=tuple(applied),
                    cache=request.cache,
                )
            )

    def _write(self, mirror: Mirror, request: HubRequest, response: Response, applied: list[str]) -> int:
        length = len(response.body) if response.file is None else response.length
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD" or length == 0:
            return 0
        if response.file is None:
            self.wfile.write(response.body)
            return length
        return self._send_file(mirror, request, response, applied)

    def _send_file(self, mirror: Mirror, request: HubRequest, response: Response, applied: list[str]) -> int:
        if response.file is None:
            return 0
        info = RequestInfo(request.scope, response.file.path)
        bandwidth = mirror.faults.take("bandwidth", info)
        drop = mirror.faults.take("drop-after", info)
        corrupt = mirror.faults.take("corrupt", info)
        stall = mirror.faults.take("stall", info)
        applied.extend(f.kind for f in (bandwidth, drop, corrupt, stall) if f is not None)
        limit = response.length if drop is None else min(response.length, int(drop.value))
        sent = 0
        with response.file.disk_path.open("rb") as body:
            try:
                if bandwidth is None and corrupt is None and stall is None:
                    sent = self._sendfile(body, response.start, limit)
                else:
                    rate = None if bandwidth is None else bandwidth.value
                    pause = None if stall is None else stall.value
                    sent = self._send_paced(body, response.start, limit, rate, corrupt is not None, pause)
            except OSError as exc:
                if not hasattr(exc, "bytes_sent"):  # _send_paced counts what went out before the error
                    exc.bytes_sent = sent  # type: ignore[attr-defined]
                raise
        if sent < response.length:
            # The drop-after fault: cut the connection mid-body, as a flaky link would.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        return sent

    def _sendfile(self, body: BinaryIO, start: int, count: int) -> int:
        """Send with sendfile(2) where there is one, counting as it goes, so a client that hangs up
        is logged with the bytes it really got (resume tests measure what is fetched again)."""
        sent = 0
        while sent < count:
            try:
                chunk = send_file(self.connection, body.fileno(), start + sent, count - sent)
            except OSError as exc:
                exc.bytes_sent = sent  # type: ignore[attr-defined]
                raise
            if chunk == 0:
                break
            sent += chunk
        return sent

    def _send_paced(
        self, body: BinaryIO, start: int, count: int, rate: float | None, corrupt: bool, stall: float | None
    ) -> int:
        """Send in chunks: no faster than ``rate``, corrupted, and/or silent for ``stall`` seconds
        after the first chunk (a connection that stays open but stops delivering)."""
        chunk_size = _SEND_CHUNK if rate is None else max(1, min(_SEND_CHUNK, int(rate) // 50))
        began = time.monotonic()
        sent = 0
        body.seek(start)
        while sent < count:
            chunk = body.read(min(chunk_size, count - sent))
            if not chunk:
                break
            if corrupt:
                chunk = _corrupt(chunk, sent)  # from the body's start: a short Range is corrupted too
            try:
                self.connection.sendall(chunk)
            except OSError as exc:  # the client hung up: log the bytes it was sent until then
                exc.bytes_sent = sent  # type: ignore[attr-defined]
                raise
            sent += len(chunk)
            if stall is not None:
                time.sleep(stall)
                stall = None
            if rate is not None:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    time.sleep(ahead)
        return sent


def _corrupt(chunk: bytes, offset: int) -> bytes:
    data = bytearray(chunk)
    first = (-offset) % _CORRUPT_STRIDE
    for i in range(first, len(data), _CORRUPT_STRIDE):
        data[i] ^= 0xFF
    return bytes(data)


def parse_request(handler: HubHandler, origin: Origin) -> HubRequest:
    """The request as the routes read it: path split before decoding, token, range, form body.
    A request it cannot read is a ``HubError`` (400, or 411/413 for a body it will not read)."""
    try:
        split = urlsplit(handler.path)
    except ValueError:  # an absolute-form target with a broken authority ("http://[x/...")
        raise HubError(400, "BadRequest", "Invalid request target", _CLOSE) from None
    # Split before decoding: a revision like "feature%2Fx" is one segment (HUB_PROTOCOL §1).
    segments = [unquote(s) for s in split.path.split("/")[1:]]
    auth = handler.headers.get("Authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    request = HubRequest(
        method=handler.command,
        origin=origin,
        path=split.path,
        query_string=split.query,
        segments=segments,
        query=parse_qs(split.query, keep_blank_values=True),
        token=token or None,
        host=_host(handler),
        range_header=handler.headers.get("Range"),
        scope="cdn" if origin == "cdn" else "api",
    )
    if handler.command == "POST":
        request.form = read_form(handler)
    return request


def unparsed_request(handler: HubHandler, origin: Origin) -> HubRequest:
    """A request that did not parse, as far as the log can tell: its method and target as sent."""
    # With no command the request line did not parse, and ``path`` is unset or the previous request's.
    target = handler.path if handler.command else ""
    path, _, query = target.partition("?")
    return HubRequest(
        method=handler.command or "",
        origin=origin,
        path=path,
        query_string=query,
        segments=[],
        query={},
        token=None,
        host=None,
        range_header=None,
    )


def _host(handler: HubHandler) -> str | None:
    """The ``Host`` header, checked (RFC 9112 §3.2: one, well-formed, else 400): the routes write
    it into ``Location`` and ``Link`` headers, where a bracket, space or folded line would break them."""
    values = handler.headers.get_all("Host") or []
    host = values[0].strip() if values else ""
    if len(values) > 1 or not _HOST.fullmatch(host):
        raise HubError(400, "BadRequest", "Invalid Host header", _CLOSE)
    return host or None


def read_form(handler: HubHandler) -> dict[str, Any]:
    """A POST body, JSON or form-encoded, as a dict (a malformed JSON body is a 400)."""
    raw = _read_body(handler)
    content_type = handler.headers.get("Content-Type", "")
    if "json" in content_type:
        try:
            value = json.loads(raw or b"{}")
        except (ValueError, RecursionError):  # bad JSON or UTF-8, a 4300-digit number, deep nesting
            raise HubError(400, "BadRequest", "Invalid JSON body") from None
        if not isinstance(value, dict):
            raise HubError(400, "BadRequest", "Invalid JSON body: expected an object")
        return value
    return dict(parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True))


def _read_body(handler: HubHandler) -> bytes:
    length = body_length(handler)
    try:
        raw = handler.rfile.read(length) if length else b""
    except OSError:  # the client hung up mid-body; the answer's write finds out too
        raw = b""
    if len(raw) < length:
        raise HubError(400, "BadRequest", "The request body is shorter than its Content-Length", _CLOSE)
    return raw


def body_length(handler: HubHandler) -> int:
    """The length of the body, checked before a byte of it is read. A refusal closes the connection
    (``_CLOSE``): the unread body would be taken for the next request."""
    if "Transfer-Encoding" in handler.headers:  # http.server does not decode chunked bodies
        raise HubError(411, None, "Length Required: send the body with a Content-Length", _CLOSE)
    lengths = handler.headers.get_all("Content-Length") or []
    if not lengths:
        return 0  # RFC 9112 §6.3: no Content-Length and no Transfer-Encoding is an empty body
    length = http_number(lengths[0].strip())
    if length is None or len(set(lengths)) > 1:
        raise HubError(400, "BadRequest", "Invalid Content-Length header", _CLOSE)
    if length > MAX_BODY:
        message = f"Payload Too Large: a request body may hold {MAX_BODY} bytes"
        raise HubError(413, None, message, _CLOSE)
    return length
