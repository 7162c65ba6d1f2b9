"""A Hugging Face Hub-compatible HTTP server over a mirror root.

Two listening sockets, as on the Hub: the API origin answers metadata and ``/resolve/`` (plain git
files in place, LFS files by a 302 to the CDN), and the CDN origin, on another port, serves LFS
bytes behind signed, expiring URLs. The real ``huggingface_hub`` client drops the token when it
follows a redirect to another origin, which only a second origin can show.

The protocol followed is the one in HUB_PROTOCOL.md: percent-encoded revisions split before
decoding, ``X-Error-Code`` on every error, ``X-Repo-Commit``/``X-Linked-Etag``/``X-Linked-Size`` on
resolve, absolute ``Link`` headers for tree pages, ``Range`` with 206/416.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from alex_models.errors import UserError
from alex_models.mirror.faults import FaultKind, Faults, RequestInfo
from alex_models.mirror.repos import (
    DirectorySource,
    NoSuchRepo,
    NoSuchRevision,
    Repo,
    RepoDir,
    RepoFile,
    Snapshot,
)

Origin = Literal["api", "cdn"]
CDN_URL_TTL_SECONDS = 3600
_SEND_CHUNK = 1024 * 1024
_POLL_INTERVAL = 0.02  # seconds between the serve loop's shutdown checks
_CORRUPT_STRIDE = 64 * 1024  # the first byte of every 64 KiB block of a body is flipped
_MODEL_INFO_KEYS = (
    "author", "cardData", "createdAt", "disabled", "downloads", "gated", "lastModified", "likes",
    "private", "sha", "siblings", "tags", "usedStorage",
)  # fmt: skip


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Response:
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

    def response(self) -> _Response:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Error-Message": _header_text(self.message),
            **self.headers,
        }
        if self.code is not None:
            headers["X-Error-Code"] = self.code
        return _Response(self.status, headers, _json({"error": self.message}))


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _header_text(text: str) -> str:
    """``text`` as printable ASCII, other characters backslash-escaped: messages echo request paths,
    and a CR/LF, NUL or non-Latin-1 character there would split, break or crash the header block."""
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text)


def _iso(date: datetime) -> str:
    return date.strftime("%Y-%m-%dT%H:%M:%S.") + f"{date.microsecond // 1000:03d}Z"


class MirrorServer:
    """Serves a mirror root over HTTP on two loopback (or chosen) ports.

    ``port=0``/``cdn_port=0`` pick free ports; ``url`` is the endpoint to give ``HF_ENDPOINT``.
    ``faults`` may be changed while the server runs; ``log`` lists every finished request.
    Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cdn_port: int = 0,
        faults: Faults | None = None,
        page_size: int = 1000,
        expand_page_size: int = 50,
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        self.source = DirectorySource(root)
        self.faults = faults if faults is not None else Faults()
        self.page_size = page_size
        self.expand_page_size = expand_page_size
        self._on_request = on_request
        self._log: list[RequestRecord] = []
        self._log_changed = threading.Condition()
        self._signing_key = secrets.token_bytes(32)
        self._api = _HTTPServer(host, port, self, "api")
        self._cdn = _HTTPServer(host, cdn_port, self, "cdn")
        self._threads: list[threading.Thread] = []

    @property
    def host(self) -> str:
        return str(self._api.server_address[0])

    @property
    def port(self) -> int:
        return int(self._api.server_address[1])

    @property
    def cdn_port(self) -> int:
        return int(self._cdn.server_address[1])

    @property
    def url(self) -> str:
        """The endpoint: what ``HF_ENDPOINT`` should be set to."""
        return f"http://{_url_host(self.host)}:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.cdn_port}"

    @property
    def log(self) -> list[RequestRecord]:
        with self._log_changed:
            return list(self._log)

    def clear_log(self) -> None:
        with self._log_changed:
            self._log.clear()

    def wait_log(
        self, ready: Callable[[list[RequestRecord]], bool], timeout: float = 10.0
    ) -> list[RequestRecord]:
        """The request log once ``ready(log)`` holds, or as it is after ``timeout`` seconds.

        A request is logged after its last byte is sent, so a client can finish reading a moment
        before the record lands; tests wait here for the records they expect.
        """
        with self._log_changed:
            self._log_changed.wait_for(lambda: ready(self._log), timeout)
            return list(self._log)

    def start(self) -> MirrorServer:
        for server in (self._api, self._cdn):
            thread = threading.Thread(
                target=server.serve_forever,
                # shutdown() waits for the loop's next poll: the default 0.5 s per origin made
                # every stop() (every test using the mirror fixture) take about a second.
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"mirror-{server.origin}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._api, self._cdn):
            if self._threads:
                server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def record(self, record: RequestRecord) -> None:
        with self._log_changed:
            self._log.append(record)
            self._log_changed.notify_all()
        if self._on_request is not None:
            self._on_request(record)

    # -- signed CDN URLs -------------------------------------------------------------------------

    def sign(self, repo: str, commit: str, path: str, expires: int) -> str:
        message = f"{repo}\0{commit}\0{path}\0{expires}".encode()
        return hmac.new(self._signing_key, message, hashlib.sha256).hexdigest()[:40]

    def cdn_location(self, request_host: str | None, repo: str, commit: str, path: str) -> str:
        # The CDN is reached on the host name the client used for the API, so a client that
        # talks to us as "localhost" or through a LAN name is redirected to the same host.
        host = _url_host(self.host) if request_host is None else _strip_port(request_host)
        expires = int(time.time()) + CDN_URL_TTL_SECONDS
        query = urlencode({"expires": expires, "sig": self.sign(repo, commit, path, expires)})
        return f"http://{host}:{self.cdn_port}/{repo}/{commit}/{quote(path)}?{query}"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _strip_port(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header[: host_header.index("]") + 1]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, host: str, port: int, mirror: MirrorServer, origin: Origin) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.mirror = mirror
        self.origin: Origin = origin
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal (a downloader stopping a range); anything else is shown."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
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
        request = _Request.parse(self, self.server.origin)
        applied = request.applied
        bytes_sent = 0
        try:
            response = _route(mirror, request, applied)
        except HubError as exc:
            response = exc.response()
        except UserError as exc:  # a broken repo.json or refs.json in the root: the admin's to fix
            print(f"mirror: {exc}", file=sys.stderr, flush=True)  # the full path goes to the admin only
            response = HubError(
                500, None, "Internal Error: the mirror's repository files are broken"
            ).response()
        except Exception:
            traceback.print_exc(file=sys.stderr)
            response = HubError(500, None, "Internal Error").response()
        try:
            bytes_sent = self._write(mirror, request, response, applied)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            self.close_connection = True
            bytes_sent = getattr(exc, "bytes_sent", 0)
        finally:
            mirror.record(
                RequestRecord(
                    method=self.command,
                    origin=self.server.origin,
                    path=request.path,
                    query=request.query_string,
                    range=self.headers.get("Range"),
                    status=response.status,
                    bytes_sent=bytes_sent,
                    authorization=self.headers.get("Authorization") is not None,
                    faults=tuple(applied),
                )
            )

    def _write(self, mirror: MirrorServer, request: _Request, response: _Response, applied: list[str]) -> int:
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

    def _send_file(
        self, mirror: MirrorServer, request: _Request, response: _Response, applied: list[str]
    ) -> int:
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
        """Send with sendfile(2), counting as it goes, so a client that hangs up is logged with
        the bytes it really got (resume tests measure what is fetched again)."""
        sent = 0
        while sent < count:
            try:
                chunk = os.sendfile(self.connection.fileno(), body.fileno(), start + sent, count - sent)
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


@dataclass
class _Request:
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

    @classmethod
    def parse(cls, handler: _Handler, origin: Origin) -> _Request:
        split = urlsplit(handler.path)
        # Split before decoding: a revision like "feature%2Fx" is one segment (HUB_PROTOCOL §1).
        segments = [unquote(s) for s in split.path.split("/")[1:]]
        auth = handler.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        request = cls(
            method=handler.command,
            origin=origin,
            path=split.path,
            query_string=split.query,
            segments=segments,
            query=parse_qs(split.query, keep_blank_values=True),
            token=token or None,
            host=handler.headers.get("Host"),
            range_header=handler.headers.get("Range"),
            scope="cdn" if origin == "cdn" else "api",
        )
        if handler.command == "POST":
            request.form = _read_form(handler)
        return request

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")


def _read_form(handler: _Handler) -> dict[str, Any]:
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    content_type = handler.headers.get("Content-Type", "")
    if "json" in content_type:
        try:
            value = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise HubError(400, "BadRequest", "Invalid JSON body") from None
        return value if isinstance(value, dict) else {}
    return dict(parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True))


# -- routing ---------------------------------------------------------------------------------------


def _route(mirror: MirrorServer, request: _Request, applied: list[str]) -> _Response:
    segments = request.segments
    if request.origin == "cdn":
        return _guarded(mirror, request, applied, None, lambda: _cdn_file(mirror, request))
    if segments[:1] == ["api"]:
        return _guarded(mirror, request, applied, None, lambda: _api(mirror, request))
    if len(segments) >= 4 and segments[2] == "resolve":
        request.scope = "resolve"
        file_path = "/".join(segments[4:])
        return _guarded(mirror, request, applied, file_path, lambda: _resolve(mirror, request))
    raise HubError(404, None, "Not Found")


def _guarded(
    mirror: MirrorServer,
    request: _Request,
    applied: list[str],
    file: str | None,
    answer: Callable[[], _Response],
) -> _Response:
    """Apply the request-level faults (latency, status, rate-limit), then answer."""
    if request.scope == "cdn" and len(request.segments) > 3:
        file = "/".join(request.segments[3:])
    info = RequestInfo(request.scope, file)
    latency = mirror.faults.take("latency", info)
    if latency is not None:
        applied.append("latency")
        time.sleep(latency.value)
    status = mirror.faults.take("status", info)
    if status is not None:
        applied.append("status")
        raise HubError(int(status.value), None, f"Injected fault: HTTP {int(status.value)}")
    limited = mirror.faults.take("rate-limit", info)
    if limited is not None:
        applied.append("rate-limit")
        raise HubError(429, None, "Too Many Requests", {"Retry-After": str(int(limited.value))})
    return answer()


def _api(mirror: MirrorServer, request: _Request) -> _Response:
    segments = request.segments[1:]
    if segments == ["agent-harnesses"]:
        return _ok({"standardEnvVars": [], "harnesses": {}})
    if segments == ["whoami-v2"]:
        _check_token(mirror, request)
        if request.token is None:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return _ok({"type": "user", "name": "mirror-user", "auth": {"type": "access_token"}})
    if len(segments) < 3 or segments[0] not in ("models", "datasets", "spaces", "kernels"):
        raise HubError(404, None, "Not Found")
    if segments[0] != "models":
        # The mirror holds models only; other repo types do not exist here.
        raise _repo_not_found(request, f"{segments[1]}/{segments[2]}")
    repo = _open_repo(mirror, request, f"{segments[1]}/{segments[2]}")
    action, rest = (segments[3], segments[4:]) if len(segments) > 3 else ("", [])
    if action == "" and not rest:
        return _model_info(repo, request, "main")
    if action == "revision" and rest:
        return _model_info(repo, request, "/".join(rest))
    if action == "tree" and rest:
        return _tree(mirror, repo, request, rest[0], "/".join(rest[1:]).strip("/"))
    if action == "paths-info" and rest and request.method == "POST":
        return _paths_info(repo, request, "/".join(rest))
    if action == "refs" and not rest:
        return _refs(repo, request)
    if action == "commits" and rest:
        return _commits(repo, "/".join(rest))
    if action == "auth-check" and not rest:
        # Answers whether the caller may download files, so gated repos are checked as on resolve.
        _open_repo(mirror, request, repo.id, files=True)
        return _ok({})
    raise HubError(404, None, "Not Found")


def _ok(value: object, headers: Mapping[str, str] | None = None) -> _Response:
    return _Response(
        200, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, _json(value)
    )


def _check_token(mirror: MirrorServer, request: _Request, repo: Repo | None = None) -> None:
    """A token no repo knows is refused everywhere, as the Hub refuses an invalid token."""
    if request.token is None or (repo is not None and request.token in repo.settings.tokens):
        return
    if request.token not in mirror.source.all_tokens():
        raise HubError(401, None, "Invalid credentials in Authorization header")


def _repo_not_found(request: _Request, repo_id: str) -> HubError:
    # Anonymous callers get 401, so the client suggests logging in; a token holder gets 404.
    message = (
        "Repository not found"
        if request.token is None
        else f"Repository {repo_id} not found or you lack access"
    )
    return HubError(401 if request.token is None else 404, "RepoNotFound", message)


def _open_repo(mirror: MirrorServer, request: _Request, repo_id: str, *, files: bool = False) -> Repo:
    try:
        repo = mirror.source.repo(repo_id)
    except NoSuchRepo:
        _check_token(mirror, request)
        raise _repo_not_found(request, repo_id) from None
    _check_token(mirror, request, repo)
    settings = repo.settings
    if settings.disabled:
        raise HubError(403, None, "Access to this resource is disabled.")
    authorized = request.token is not None and request.token in settings.tokens
    if settings.private and not authorized:
        raise _repo_not_found(request, repo_id)
    if files and settings.gated and not authorized:
        if request.token is None:
            message = (
                f"Access to model {repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in."
            )
            raise HubError(401, "GatedRepo", message)
        message = (
            f"Access to model {repo_id} is restricted and you are not in the authorized list. "
            f"Visit {request.host or 'the mirror'}/{repo_id} to ask for access."
        )
        raise HubError(403, "GatedRepo", message)
    return repo


def _snapshot(repo: Repo, revision: str, extra_headers: Mapping[str, str] | None = None) -> Snapshot:
    try:
        return repo.snapshot(repo.resolve(revision))
    except NoSuchRevision:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}", extra_headers) from None


def _commit_title(snapshot: Snapshot) -> str:
    return f"Commit {snapshot.commit[:7]}"


def _model_info(repo: Repo, request: _Request, revision: str) -> _Response:
    snapshot = _snapshot(repo, revision)
    settings = repo.settings
    blobs = request.flag("blobs")
    siblings = []
    for path in sorted(snapshot.files):
        item: dict[str, Any] = {"rfilename": path}
        if blobs:
            f = snapshot.files[path]
            item.update(size=f.size, blobId=f.git_oid)
            if f.sha256 is not None:
                # In model info the LFS hash key is "sha256"; in tree and paths-info it is "oid".
                item["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        siblings.append(item)
    org = repo.id.split("/")[0]
    date = _iso(snapshot.date)
    info: dict[str, Any] = {
        "_id": hashlib.sha1(repo.id.encode(), usedforsecurity=False).hexdigest()[:24],
        "id": repo.id,
        "modelId": repo.id,
        "author": org,
        "sha": snapshot.commit,
        "lastModified": date,
        "createdAt": date,
        "private": settings.private,
        "gated": settings.gated,
        "disabled": settings.disabled,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "cardData": {},
        "siblings": siblings,
        "usedStorage": sum(f.size for f in snapshot.files.values()),
    }
    if request.flag("securityStatus"):
        info["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
    expand = request.query.get("expand")
    if expand:
        unknown = sorted(set(expand) - set(_MODEL_INFO_KEYS))
        if unknown:
            raise HubError(400, "BadRequest", f"Invalid expand value(s): {', '.join(unknown)}")
        info = {k: v for k, v in info.items() if k in ("_id", "id", *expand)}
    return _ok(info)


def _entry(item: RepoFile | RepoDir, snapshot: Snapshot, expand: bool) -> dict[str, Any]:
    if isinstance(item, RepoDir):
        entry: dict[str, Any] = {"type": "directory", "oid": item.git_oid, "size": 0, "path": item.path}
    else:
        entry = {"type": "file", "oid": item.git_oid, "size": item.size, "path": item.path}
        if item.sha256 is not None:
            entry["lfs"] = {"oid": item.sha256, "size": item.size, "pointerSize": item.pointer_size}
    if expand:
        entry["lastCommit"] = {
            "id": snapshot.commit,
            "title": _commit_title(snapshot),
            "date": _iso(snapshot.date),
        }
        if isinstance(item, RepoFile):
            scans = {"avScan": {"virusFound": False}, "pickleImportScan": None}
            entry["securityFileStatus"] = {"status": "safe", **scans}
    return entry


def _tree(mirror: MirrorServer, repo: Repo, request: _Request, revision: str, base: str) -> _Response:
    snapshot = _snapshot(repo, revision)
    if base and base not in snapshot.dirs:
        raise HubError(404, "EntryNotFound", f'{base} does not exist on "{revision}"')
    recursive = request.flag("recursive")
    expand = request.flag("expand")
    prefix = f"{base}/" if base else ""
    everything: dict[str, RepoFile | RepoDir] = {**snapshot.dirs, **snapshot.files}
    items = [
        everything[path]
        for path in sorted(everything)
        if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])
    ]
    page_size = mirror.expand_page_size if expand else mirror.page_size
    start = _decode_cursor(request.query.get("cursor", [""])[-1])
    page = items[start : start + page_size]
    headers = {}
    if start + page_size < len(items):
        query = {k: v for k, v in request.query.items() if k != "cursor"}
        query["cursor"] = [_encode_cursor(start + page_size)]
        # The client follows this URL verbatim and cannot follow a relative one (HUB_PROTOCOL §2.2).
        host = request.host or f"{_url_host(mirror.host)}:{mirror.port}"
        headers["Link"] = f'<http://{host}{request.path}?{urlencode(query, doseq=True)}>; rel="next"'
    return _ok([_entry(item, snapshot, expand) for item in page], headers)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["offset"]
    except (ValueError, KeyError, TypeError):
        raise HubError(400, "BadRequest", "Invalid cursor") from None
    if not isinstance(offset, int) or offset < 0:
        raise HubError(400, "BadRequest", "Invalid cursor")
    return offset


def _paths_info(repo: Repo, request: _Request, revision: str) -> _Response:
    snapshot = _snapshot(repo, revision)
    paths = request.form.get("paths", [])
    paths = [paths] if isinstance(paths, str) else paths
    expand_value = request.form.get("expand", False)
    if isinstance(expand_value, list):
        expand_value = expand_value[-1] if expand_value else False
    expand = expand_value is True or str(expand_value).lower() in ("1", "true")
    entries = []
    for requested in paths:
        if not isinstance(requested, str):
            continue
        path = requested.strip("/")
        item: RepoFile | RepoDir | None = snapshot.files.get(path) or snapshot.dirs.get(path)
        if item is not None:  # missing paths are silently left out, as on the Hub
            entries.append(_entry(item, snapshot, expand))
    return _ok(entries)


def _refs(repo: Repo, request: _Request) -> _Response:
    refs = repo.refs

    def items(names: Mapping[str, str], kind: str) -> list[dict[str, str]]:
        return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c} for n, c in sorted(names.items())]

    body: dict[str, Any] = {
        "branches": items(refs.branches, "heads"),
        "converts": [],
        "tags": items(refs.tags, "tags"),
    }
    if request.flag("include_prs"):
        body["pullRequests"] = []
    return _ok(body)


def _commits(repo: Repo, revision: str) -> _Response:
    # A mirror root keeps no history, only commits: a revision's log is its own commit.
    snapshot = _snapshot(repo, revision)
    title = _commit_title(snapshot)
    entry = {"id": snapshot.commit, "title": title, "message": "", "authors": [], "date": _iso(snapshot.date)}
    return _ok([entry])


def _resolve(mirror: MirrorServer, request: _Request) -> _Response:
    if request.method == "POST":
        raise HubError(405, None, "Method Not Allowed")
    org, name, _, revision, *path_parts = request.segments
    repo = _open_repo(mirror, request, f"{org}/{name}", files=True)
    snapshot = _snapshot(repo, revision)
    path = "/".join(path_parts)
    commit_header = {"X-Repo-Commit": snapshot.commit}
    item = snapshot.files.get(path)
    if item is None:
        raise HubError(404, "EntryNotFound", f'{path} does not exist on "{revision}"', commit_header)
    if mirror.faults.take("redirect-loop", RequestInfo("resolve", path)):
        request.applied.append("redirect-loop")
        here = f"http://{request.host}{request.path}"
        return _Response(302, {**commit_header, "Location": here}, f"Found. Redirecting to {here}".encode())
    if item.sha256 is not None:
        location = mirror.cdn_location(request.host, repo.id, snapshot.commit, item.path)
        headers = {
            **commit_header,
            "Location": location,
            "ETag": f'"{item.sha256}"',
            "X-Linked-Etag": f'"{item.sha256}"',
            "X-Linked-Size": str(item.size),
            "Content-Type": "text/plain; charset=utf-8",
        }
        return _Response(302, headers, f"Found. Redirecting to {location}".encode())
    return _file_response(mirror, request, item, {**commit_header, "ETag": f'"{item.git_oid}"'})


def _cdn_file(mirror: MirrorServer, request: _Request) -> _Response:
    if request.method == "POST" or len(request.segments) < 4:
        raise HubError(404, None, "Not Found")
    org, name, commit, *path_parts = request.segments
    repo_id, path = f"{org}/{name}", "/".join(path_parts)
    expires = request.query.get("expires", ["0"])[-1]
    signature = request.query.get("sig", [""])[-1]
    expected = mirror.sign(repo_id, commit, path, int(expires) if expires.isdigit() else 0)
    if not hmac.compare_digest(signature, expected) or not expires.isdigit() or int(expires) < time.time():
        raise HubError(403, None, "Request has expired or its signature does not match")
    try:
        item = mirror.source.repo(repo_id).snapshot(commit).files[path]
    except (NoSuchRepo, KeyError):
        raise HubError(404, None, "Not Found") from None
    return _file_response(mirror, request, item, {"ETag": f'"{item.etag}"'})


_HEADER_LIES: tuple[FaultKind, ...] = ("ignore-range", "wrong-range", "bad-length")


def _file_response(
    mirror: MirrorServer, request: _Request, item: RepoFile, headers: dict[str, str]
) -> _Response:
    info = RequestInfo(request.scope, item.path)
    lies: set[FaultKind] = {kind for kind in _HEADER_LIES if mirror.faults.take(kind, info)}
    request.applied.extend(sorted(lies))
    filename = item.path.rsplit("/", 1)[-1]
    headers = {
        **headers,
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename)}; filename=\"{_ascii(filename)}\"",
    }
    short = 1 if "bad-length" in lies else 0  # a consistent lie: one byte short, Content-Length agreeing
    byte_range = None if "ignore-range" in lies else _parse_range(request.range_header, item.size)
    if "ignore-range" in lies:
        del headers["Accept-Ranges"]
    if byte_range is None:
        return _Response(200, headers, file=item, start=0, length=max(0, item.size - short))
    if byte_range == "unsatisfiable":
        raise HubError(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{item.size}"})
    start, end = byte_range
    shift = 1 if "wrong-range" in lies else 0
    headers["Content-Range"] = f"bytes {start + shift}-{end + shift}/{item.size}"
    return _Response(206, headers, file=item, start=start, length=max(0, end - start + 1 - short))


def _ascii(name: str) -> str:
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One ``bytes=`` range as (first, last) inclusive; None means serve the whole file.

    A malformed or multi-range header is ignored (RFC 9110 lets a server do so), which also
    exercises clients that must cope with a 200 to a Range request.
    """
    if header is None or not header.startswith("bytes=") or "," in header:
        return None
    first, sep, last = header[6:].strip().partition("-")
    if not sep or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()):
        return None
    if last and not last.isdigit():
        return None
    if not first:  # suffix range: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        return "unsatisfiable" if start >= size else None
    return start, end


def serve_until_stopped(
    root: Path, *, host: str, port: int, cdn_port: int, faults: Faults, access_log: bool
) -> None:
    """Run a mirror in the foreground until SIGINT or SIGTERM; print where it listens."""

    def log_line(record: RequestRecord) -> None:
        tags = f" [{','.join(record.faults)}]" if record.faults else ""
        line = f"{record.method} {record.origin} {record.path} {record.status} {record.bytes_sent}B{tags}"
        print(line, file=sys.stderr, flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        on_request = log_line if access_log else None
        server = MirrorServer(
            root, host=host, port=port, cdn_port=cdn_port, faults=faults, on_request=on_request
        )
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} or {cdn_port}: {exc.strerror}",
            hint="pick other ports with --port/--cdn-port (0 picks a free one)",
        ) from None
    with server:
        print(f"Serving {root} at {server.url} (LFS bytes from {server.cdn_url})", flush=True)
        print(f"  export HF_ENDPOINT={server.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop
            stop.wait()
