"""Blobs over HTTP: the wire checks the Hub and plain-URL sources share, and the plain-URL source.

A GET with ``Range`` (none for the whole blob), redirects followed; the status decides (200/206
read, 404/410 missing, 408/429/5xx and transport failures retried, 401/403 access denied, the
rest refused); ``Content-Range`` and ``Content-Length`` must agree with what was asked and with
the blob's size; the body is read in large pieces straight from the connection (``_read``).
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import httpx2

from alex_models._retry import status_verdict
from alex_models.errors import AlexModelsError, IntegrityError, RemoteError, UserError
from alex_models.fetch import USER_AGENT, transport_verdict, without_query
from alex_models.sources.base import Blob, Missing, Transient, Wire
from alex_models.sources.keepalive import KeptBody, receive

_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def download_headers(token: str | None) -> dict[str, str]:
    """Headers for file downloads. ``Accept-Encoding: identity`` because the bytes are hashed as they
    arrive and Range offsets count raw bytes; httpx drops ``Authorization`` itself on a redirect to
    another origin (the CDN)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def origin(url: str | httpx2.URL) -> str:
    """``scheme://host[:port]`` of ``url``: how an HTTP source names itself."""
    parsed = httpx2.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


@contextlib.contextmanager
def _translated(blob: Blob) -> Iterator[None]:
    """httpx's failures in the downloader's terms: one without an HTTP answer is worth another try."""
    try:
        yield
    except httpx2.TransportError as exc:
        raise Transient(str(exc), transport_verdict(exc)[1]) from None
    except httpx2.HTTPError as exc:  # not worth retrying: a redirect loop, a malformed URL, …
        raise RemoteError(
            f"{blob.label}: {type(exc).__name__}: {exc}", hint="the endpoint misbehaves; check HF_ENDPOINT"
        ) from None


class HttpReader:
    """One blob over HTTP for one transfer. The Hub's reader adds its rules by overriding
    ``_target``, ``_announced``, ``_check`` and ``_denied``."""

    def __init__(self, blob: Blob, wire: Wire, url: str, headers: Mapping[str, str]) -> None:
        self.blob = blob
        self.wire = wire
        self.url = url
        self.headers = headers
        self._declined: set[str] = set()
        """URLs whose answer the kept connections left to httpx2 (a redirect, a chunked body):
        the transfer's next pieces ask httpx2 straight away, not the same GET twice."""

    @contextlib.contextmanager
    def open(self, start: int, end: int) -> Iterator[HttpBody]:
        url, sent = self._target()
        headers = dict(sent)
        ranged = not (start == 0 and end == self.blob.size)
        if ranged:
            headers["Range"] = f"bytes={start}-{end - 1}"
        with _translated(self.blob):
            response = self._get(url, headers)
        try:
            self._check(url, response)
            status = response.status_code
            partial = status == 206 or (ranged and status == 200 and self._range_in_200(response, start, end))
            self._check_length(response, start, end, partial=partial)
            length = end - start if partial else self.blob.size
            yield HttpBody(self.blob, response, length, self.wire, whole=not partial)
        finally:
            response.close()

    def _target(self) -> tuple[str, Mapping[str, str]]:
        """Where the next piece is asked for, with which headers."""
        return self.url, self.headers

    def _announced(self, response: httpx2.Response) -> None:
        """The first answer, before a redirect is followed: nothing to check for a plain URL."""

    def _check(self, url: str, response: httpx2.Response) -> None:
        """The final answer to a GET of ``url``, before its body is read."""
        status = response.status_code
        if status in (200, 206):
            return
        again, retry_after = status_verdict(status, response.headers)
        if again:
            raise Transient(f"the server answered {status}", retry_after)
        where = without_query(response.url)
        if status in (404, 410):
            raise Missing(f"{where} answered {status}", hint="is the lock for this endpoint?")
        if status in (401, 403):
            raise self._denied(where, status)
        raise RemoteError(
            f"{self.blob.label}: {where} answered {status}", hint="is the lock for this endpoint?"
        )

    def _range_in_200(self, response: httpx2.Response, start: int, end: int) -> bool:
        """Whether a 200 to the Range request for ``start``-``end`` holds that range alone. Never
        here: from the Hub or a plain URL a 200 is the whole file (a server that ignores Range)."""
        return False

    def _denied(self, where: str, status: int) -> AlexModelsError:
        return UserError(
            f"{self.blob.label}: {where} answered {status}: access denied",
            hint="a plain URL is sent no credentials: use one that opens without them",
        )

    def _direct(self, url: str) -> bool:
        """Whether the GET of ``url`` may go on a kept connection (``Wire.kept``): it is not expected
        to be a redirect, which httpx2 follows."""
        return True

    def _get(self, url: str, headers: Mapping[str, str]) -> httpx2.Response:
        """The answer to a GET of ``url``, redirects followed; the first answer is checked before a
        redirect is followed (the Hub's announces the file's SHA256). The GET that answers with the
        body goes on a kept connection where one applies (``Wire.kept``), else through httpx2."""
        client = self.wire.http
        timeout = httpx2.Timeout(self.wire.read_timeout, connect=min(10.0, self.wire.read_timeout))
        request = client.build_request("GET", url, headers=headers, timeout=timeout)
        response = self._kept(request) if self._direct(url) else None
        if response is None:
            response = client.send(request, stream=True, follow_redirects=False)
        try:
            self._announced(response)
            if response.next_request is not None:
                response.read()  # a few bytes ("Found. Redirecting to …"): the connection stays reusable
        except BaseException:
            response.close()
            raise
        if response.next_request is None:
            return response
        response.close()
        return self._kept(response.next_request) or client.send(
            response.next_request, stream=True, follow_redirects=True
        )

    def _kept(self, request: httpx2.Request) -> httpx2.Response | None:
        kept, url = self.wire.kept, str(request.url)
        if kept is None or url in self._declined:
            return None
        response = kept.send(request, self.wire.read_timeout)
        if response is None:
            self._declined.add(url)
        return response

    def _check_length(self, response: httpx2.Response, start: int, end: int, *, partial: bool) -> None:
        """``partial``: the body is the range asked (a 206, or a 200 ``_range_in_200`` accepts, whose
        Content-Range is then checked if it sent one), else the whole blob."""
        size = self.blob.size
        if partial and (response.status_code == 206 or "Content-Range" in response.headers):
            match = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match[1]) != start or int(match[2]) >= end:
                raise RemoteError(
                    f"{self.blob.label}: asked for bytes {start}-{end - 1}, "
                    f"the server answered {response.headers.get('Content-Range')!r}",
                    hint="the server mishandles Range requests; nothing was stored",
                )
            if match[3] != "*" and int(match[3]) != size:
                raise self._size_mismatch(int(match[3]))
            span = int(match[2]) - int(match[1]) + 1
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdecimal() and int(declared) != span:
                raise RemoteError(  # the server contradicts itself: a protocol error, not our bytes
                    f"{self.blob.label}: the server announced {declared} bytes for a {span}-byte range",
                    hint="the server mishandles Range requests; nothing was stored",
                )
            return
        if partial:
            return  # a 200 with the range's length and no Content-Range (``_range_in_200``)
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdecimal() and int(declared) != size:
            raise self._size_mismatch(int(declared))

    def _size_mismatch(self, offered: int) -> IntegrityError:
        """The server offers a file of another size than the lock pins: these are not the locked
        bytes (a changed file, another endpoint, or an edited lock), which is an integrity failure."""
        return IntegrityError(
            f"{self.blob.label}: the server offers {offered} bytes, the lock pins {self.blob.size}",
            hint="nothing was stored; if models.lock was edited, restore it from git, else check HF_ENDPOINT",
        )


class HttpBody:
    """A response's body: the whole blob, or the range asked (checked by ``HttpReader``)."""

    def __init__(
        self, blob: Blob, response: httpx2.Response, length: int, wire: Wire, *, whole: bool
    ) -> None:
        self.whole = whole
        self._blob = blob
        self._response = response
        self._length = length
        self._read_timeout = wire.read_timeout

    def __iter__(self) -> Iterator[bytes | memoryview]:
        with _translated(self._blob):
            yield from _read(self._response, self._length, self._read_timeout)

    def cut(self) -> None:
        """Shut the response's socket down: a read blocked on a stalled server ends now."""
        stream = self._response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, also under TLS: an SSLSocket's own would drop the TLS
                # state that the reading thread is using.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _read(response: httpx2.Response, length: int, read_timeout: float) -> Iterator[bytes | memoryview]:
    """The body of a download, received straight from the connection into one reused buffer where
    that is certainly the same bytes (``keepalive.receive``); otherwise through httpx.

    Through httpx every 64 KiB read passes h11's buffers in Python: about 0.5 s more user CPU per
    GiB here. A body on a kept connection (``KeptBody``) is received so already. On one of httpx2's,
    a plain HTTP/1.1 body of a known length can be read from the connection's socket (httpcore's
    documented ``network_stream``; TLS is the socket's own) once h11 has handed over what it had
    buffered, which its first body event does: it always yields every buffered body byte. That
    connection is then closed, never reused, as h11 did not see the whole body.
    """
    if isinstance(response.stream, KeptBody):
        yield from response.iter_raw()
        return
    plain = (
        response.http_version == "HTTP/1.1"
        and response.headers.get("Content-Length") == str(length)
        and "Transfer-Encoding" not in response.headers
        and response.headers.get("Content-Encoding", "identity").strip().lower() == "identity"
    )
    sock = _body_socket(response) if plain else None
    if sock is None:
        yield from response.iter_bytes()
        return
    # Not a for-loop with a break: leaving iter_raw closes the response, and the connection.
    raw = response.iter_raw()
    yield from receive(sock, next(raw, b""), length, read_timeout)


def _body_socket(response: httpx2.Response) -> socket.socket | None:
    """The socket whose reads are the response's bytes (TLS is an ``SSLSocket``'s own), or None:
    TLS inside TLS (through an HTTPS proxy) is decrypted above the socket."""
    stream = response.extensions.get("network_stream")
    if stream is None or isinstance(stream.get_extra_info("ssl_object"), ssl.SSLObject):
        return None
    sock = stream.get_extra_info("socket")
    return sock if isinstance(sock, socket.socket) else None


@dataclass(frozen=True)
class UrlSource:
    """A plain HTTP(S) URL (a ``url:`` model): sent no token, ever."""

    url: str

    @property
    def name(self) -> str:
        return origin(self.url)

    def reader(self, blob: Blob, wire: Wire) -> HttpReader:
        return HttpReader(blob, wire, self.url, download_headers(None))
