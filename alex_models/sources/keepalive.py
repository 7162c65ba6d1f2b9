"""Connections kept alive across the pieces of a download: a small HTTP/1.1 client for the GETs
whose bodies are file bytes, so each 32 MiB piece does not pay a new TCP (and, on a CDN, TLS)
connection and a fresh slow start.

Why not httpx2's pool: a body read through h11 costs far more CPU than one received straight into
a reused buffer (``receive``): 0.8 to 0.9 s per GiB against 0.3 here (``bench/keepalive.py --cpu``),
and still about 0.3 s more with 256 KiB reads through a network backend of our own, as h11 copies
every byte several times between its buffers. httpcore has no supported way to hand a connection
back after its body was read past h11, so it closes it.

Deliberately narrow; whatever it does not handle is left to httpx2 (``send`` answers None): GET
only, an answer with a ``Content-Length`` and no ``Transfer-Encoding``/``Content-Encoding``, never
a redirect (httpx2 follows those and drops ``Authorization`` on the way), and only where httpx2
would connect directly (no proxy for the scheme in the environment). The request's headers are
httpx2's own (``Client.build_request``); TLS verification is the client's context, by default
httpx2's own (``create_ssl_context``: ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else the system's CAs,
through truststore on macOS and Windows). ``Connection: close``
and HTTP/1.0 answers are honoured; a kept connection the server closed meanwhile is noticed before
it is used, or when a request on it gets no answer at all: that request is sent once more, on a
fresh connection.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
import threading
import time
import urllib.request
import weakref
from collections.abc import Iterator

import httpx2

from alex_models.sources.base import Transient

BUFFER = 1024 * 1024
"""Bytes gathered from the connection before they are handed over: the size the downloader writes
(``DownloadOptions.chunk``), so a full buffer is written as it is; little memory per connection."""
_HAND_OVER = 0.1
"""On a slow link, seconds after which what arrived is handed over anyway, so a kill loses little."""
_MAX_HEAD = 64 * 1024
_IDLE_SECONDS = 10.0
"""How long an idle connection is kept: less than servers keep theirs (nginx 75 s, CDNs a minute),
so few are found closed, and enough to span the gap between a file's pieces and the next file's."""
_MAX_IDLE = 16
"""Idle connections kept per origin: two transfers' worth at the default of 8 connections."""
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) (\d{3})(?: ([^\r\n]*))?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE = re.compile(rb"[\r\n\0]")

_Origin = tuple[str, str, int]
"""Scheme, host, port."""
_Head = tuple[bytes, int, str, list[tuple[bytes, bytes]], bytes]
"""An answer's minor HTTP version, status, reason, header fields, and the bytes after them."""


class KeptConnections:
    """Idle connections by origin, shared by a downloader's transfers (thread-safe)."""

    def __init__(self, tls: ssl.SSLContext | None = None, *, trust_env: bool = True) -> None:
        self._tls = tls
        self._trust_env = trust_env
        proxies = urllib.request.getproxies() if trust_env else {}
        self._proxied = {scheme for scheme in ("http", "https") if proxies.get(scheme) or proxies.get("all")}
        """Schemes httpx2 sends through a proxy (``NO_PROXY`` exceptions included: those stay with it)."""
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._lock = threading.Lock()
        self.opened = 0
        """Connections opened so far (for tests and benchmarks)."""
        weakref.finalize(self, _close_all, self._idle, self._lock)

    def send(self, request: httpx2.Request, read_timeout: float) -> httpx2.Response | None:
        """The answer to ``request`` (a GET built by the httpx2 client), its body not read yet; None
        when httpx2 should send it: a proxy applies, or the answer is not one this reads."""
        url = request.url
        if (
            request.method != "GET"
            or url.scheme not in ("http", "https")
            or url.scheme in self._proxied
            or url.userinfo  # httpx2 turns it into Basic auth
        ):
            return None
        head = _head(request)
        if head is None:
            return None
        # The host as it goes on the wire (IDNA-encoded, an IPv6 address without brackets), as httpcore's.
        key = (url.scheme, url.raw_host.decode("ascii"), url.port or (443 if url.scheme == "https" else 80))
        conn, (version, status, reason, fields, rest) = self._exchange(key, head, read_timeout)
        headers = httpx2.Headers(fields)
        if status >= 400:  # the reader refuses it on its status and headers: no body to read, and
            conn.close()  # none sent again (a 503 is not asked twice)
            return httpx2.Response(
                status,
                headers=fields,
                request=request,
                extensions={"reason_phrase": reason.encode("latin-1")},
            )
        length = _content_length(headers)
        if (
            length is None
            or 300 <= status < 400  # a redirect: httpx2 follows it (``HttpReader`` then asks it directly)
            or status in (204, 304)
            or "Transfer-Encoding" in headers
            or headers.get("Content-Encoding", "identity").strip().lower() != "identity"
        ):
            conn.close()  # not a body this reads (chunked, compressed, none): httpx2's to do
            return None
        keep = version == b"1" and "close" not in _tokens(headers.get_list("Connection", split_commas=True))
        if len(rest) > length:  # more than the body: the connection's state is unknown
            rest, keep = rest[:length], False
        body = KeptBody(self, conn, rest, length, keep, read_timeout)
        return httpx2.Response(
            status,
            headers=fields,
            stream=body,
            request=request,
            extensions={
                "http_version": b"HTTP/1." + version,
                "reason_phrase": reason.encode("latin-1"),  # bytes, as httpcore gives it
                "network_stream": conn,
            },
        )

    def _exchange(self, key: _Origin, head: bytes, read_timeout: float) -> tuple[_Connection, _Head]:
        """``head`` sent on a kept connection to ``key`` (or a new one), and the answer's head."""
        fresh_only = False
        while True:
            conn = None if fresh_only else self._take(key)
            reused = conn is not None
            conn = conn or self._connect(key, read_timeout)
            try:
                conn.sock.settimeout(read_timeout)
                conn.sock.sendall(head)
                return conn, _read_head(conn.sock)
            except (_Closed, ConnectionError) as exc:
                conn.close()
                if reused and not (isinstance(exc, _Closed) and exc.partial):
                    fresh_only = True  # the server had closed this idle one: once more, on a new one
                    continue
                raise httpx2.RemoteProtocolError(f"the server closed the connection: {exc}") from None
            except TimeoutError as exc:
                conn.close()
                raise httpx2.ReadTimeout(f"no answer for {read_timeout:g} s: {exc}") from None
            except OSError as exc:
                conn.close()
                raise httpx2.ReadError(str(exc)) from None
            except _Malformed as exc:
                conn.close()
                raise httpx2.RemoteProtocolError(f"a malformed answer: {exc}") from None

    def _take(self, key: _Origin) -> _Connection | None:
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                conn = idle.pop()
                if time.monotonic() - conn.idle_since < _IDLE_SECONDS and not _readable(conn.sock):
                    return conn
                conn.close()  # expired, or the server closed it (EOF waiting) or sent what nobody asked for
        return None

    def _put(self, key: _Origin, conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            now = time.monotonic()
            for expired in [c for c in idle if now - c.idle_since >= _IDLE_SECONDS]:
                idle.remove(expired)
                expired.close()
            if len(idle) >= _MAX_IDLE:
                conn.close()
                return
            kept = _Connection(conn.sock, key)
            conn.returned = True
            kept.idle_since = now
            idle.append(kept)

    def _connect(self, key: _Origin, read_timeout: float) -> _Connection:
        scheme, host, port = key
        try:
            sock = socket.create_connection((host, port), timeout=min(10.0, read_timeout))
        except TimeoutError as exc:
            raise httpx2.ConnectTimeout(str(exc)) from None
        except OSError as exc:
            raise httpx2.ConnectError(str(exc)) from None
        if scheme == "https":
            try:
                sock = self._context().wrap_socket(sock, server_hostname=host)
            except TimeoutError as exc:
                sock.close()
                raise httpx2.ConnectTimeout(str(exc)) from None
            except OSError as exc:  # ssl.SSLError (a certificate not trusted, …) included
                sock.close()
                raise httpx2.ConnectError(str(exc)) from None
        with self._lock:
            self.opened += 1
        return _Connection(sock, key)

    def _context(self) -> ssl.SSLContext:
        with self._lock:
            if self._tls is None:
                self._tls = httpx2.create_ssl_context(trust_env=self._trust_env)
                self._tls.set_alpn_protocols(["http/1.1"])
            return self._tls


class _Connection:
    """A socket and where it leads; asked for its ``socket`` as httpcore's network streams are
    (``HttpBody.cut``)."""

    def __init__(self, sock: socket.socket, key: _Origin) -> None:
        self.sock = sock
        self.key = key
        self.idle_since = 0.0
        self.returned = False
        """Back in the pool under a new handle: this one (still held by a finished response, which
        another thread may ``cut``) no longer reaches the socket."""

    def get_extra_info(self, name: str) -> object:
        return self.sock if name == "socket" and not self.returned else None

    def close(self) -> None:
        if not self.returned:
            with contextlib.suppress(OSError):
                self.sock.close()


class KeptBody(httpx2.SyncByteStream):
    """A body of ``length`` bytes received with ``receive``; its connection is kept when all of it
    was read (and the server keeps it), else closed."""

    def __init__(
        self, pool: KeptConnections, conn: _Connection, first: bytes, length: int, keep: bool, timeout: float
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._first = first
        self._length = length
        self._keep = keep
        self._timeout = timeout
        self._received = 0

    def __iter__(self) -> Iterator[bytes | memoryview]:  # type: ignore[override]
        if self._conn is None:
            return
        for piece in receive(self._conn.sock, self._first, self._length, self._timeout):
            self._received += len(piece)
            yield piece

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._keep and self._received == self._length:
            self._pool._put(conn.key, conn)
        else:
            conn.close()


def receive(
    sock: socket.socket, first: bytes, length: int, read_timeout: float
) -> Iterator[bytes | memoryview]:
    """A body of ``length`` bytes whose ``first`` arrived already, the rest received from ``sock``
    into one reused buffer (``recv_into``: no new object per read, no copy to gather them), handed
    over when full, or after ``_HAND_OVER`` seconds on a slow link; each piece is a view of that
    buffer, valid until the next is asked for. Ends early when the connection closes (the caller
    sees the shortfall); a timeout or a failure raises ``Transient`` after what arrived is handed over.
    """
    received = len(first)
    if first:
        yield first
    buffer = memoryview(bytearray(min(BUFFER, max(length - received, 0))))
    sock.settimeout(read_timeout)
    while received < length:
        filled, failure = 0, None
        began = time.monotonic()
        want = min(len(buffer), length - received)
        try:
            while filled < want:
                got = sock.recv_into(buffer[filled:want])
                if not got:
                    break  # the connection was closed early; the caller sees the shortfall
                filled += got
                if time.monotonic() - began >= _HAND_OVER:
                    break
        except TimeoutError as exc:
            failure = Transient(f"no byte for {read_timeout:g} s: {exc}")
        except OSError as exc:
            failure = Transient(f"the connection failed: {exc}")
        if filled:
            received += filled
            yield buffer[:filled]  # what arrived before a failure is kept: the retry resumes after it
        if failure is not None:
            raise failure
        if not filled:
            return


class _Closed(Exception):
    """The server closed the connection before the end of an answer's head."""

    def __init__(self, partial: bool) -> None:
        super().__init__("before the end of the answer's head" if partial else "before answering")
        self.partial = partial


class _Malformed(Exception):
    """An answer's head that is not HTTP/1.x."""


def _head(request: httpx2.Request) -> bytes | None:
    """The request line and headers of ``request``, or None when a header could not be sent as it
    is (httpx2 then refuses it as it does)."""
    lines = [b"GET " + request.url.raw_path + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in request.headers.raw]
    if any(_UNSAFE.search(line) for line in lines):
        return None
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _read_head(sock: socket.socket) -> _Head:
    """The minor version, status, reason and header fields of the answer on ``sock``, and the bytes
    received after them (the body's first)."""
    data = bytearray()
    while True:
        head = _one_head(sock, data)
        if not 100 <= head[1] < 200 or head[1] == 101:
            return head
        data = bytearray(head[4])  # an interim answer (103 Early Hints, …): the real one follows


def _one_head(sock: socket.socket, data: bytearray) -> _Head:
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > _MAX_HEAD:
            raise _Malformed(f"no end of its head in {_MAX_HEAD} bytes")
        chunk = sock.recv(_MAX_HEAD)
        if not chunk:
            raise _Closed(partial=bool(data))
        data += chunk
    status_line, *lines = bytes(data[:end]).split(b"\r\n")
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise _Malformed(f"status line {status_line[:100]!r}")
    fields = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or _TOKEN.fullmatch(name) is None:  # an obsolete folded line included
            raise _Malformed(f"header line {line[:100]!r}")
        fields.append((name, value.strip(b" \t")))
    reason = (match[3] or b"").decode("latin-1")
    return match[1], int(match[2]), reason, fields, bytes(data[end + 4 :])


def _content_length(headers: httpx2.Headers) -> int | None:
    values = set(headers.get_list("Content-Length", split_commas=True))
    if len(values) != 1:
        return None
    value = values.pop().strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _tokens(values: list[str]) -> set[str]:
    return {value.strip().lower() for value in values}


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: an end of file (the server closed it), or
    bytes nobody asked for (TLS may hold them decrypted already); either way it cannot carry
    another request."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _close_all(idle: dict[_Origin, list[_Connection]], lock: threading.Lock) -> None:
    """When the pool is gone: its idle connections are closed, not left to the garbage collector."""
    with lock:
        for conns in idle.values():
            for conn in conns:
                conn.close()
        idle.clear()
