"""A gateway in front of the test registry, as a cloud registry's front end or an nginx would be:
it can ask for a Bearer token from its own anonymous token service (the flow Docker Hub and GHCR
use), redirect blob GETs to a storage origin on another port (as registries on S3 do), answer
429 to the first blob GETs, and ignore ``Range``; in front of an S3 server too (``signed``). Everything else goes to the real registry
behind it, whose answers it passes back. Its log records what each request carried.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx2


def token_for(scope: str) -> str:
    """The token the gateway's service gives for ``scope``: it grants that scope, nothing more."""
    return f"token-for-{scope}"


_BLOB_RE = re.compile(r"/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
_REPO_RE = re.compile(r"/v2/(?P<repo>.+?)/(?:blobs|manifests|tags)/")
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"}


@dataclass(frozen=True)
class Seen:
    """One request the gateway received."""

    origin: str
    """``api`` or ``storage``."""
    method: str
    path: str
    authorization: str | None
    range: str | None
    status: int


@dataclass
class Gateway:
    """In front of ``upstream`` (``127.0.0.1:PORT``); ``throttle`` first blob GETs get a 429."""

    upstream: str
    bearer: bool = False
    redirect: bool = False
    ignore_range: bool = False
    throttle: int = 0
    signed: bool = False
    """Pass each request's Authorization on (an S3 server's signature; the Host differs, so only
    for a server that checks none, as moto by default)."""
    log: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._api = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("api"))
        self._storage = ThreadingHTTPServer(("127.0.0.1", 0), self._handler("storage"))
        self.host = f"127.0.0.1:{self._api.server_address[1]}"
        self.storage = f"127.0.0.1:{self._storage.server_address[1]}"
        self._http = httpx2.Client(trust_env=False, timeout=30)
        self._lock = threading.Lock()

    def __enter__(self) -> Gateway:
        for server in (self._api, self._storage):
            # a short poll: shutdown() waits for it
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self._api, self._storage):
            server.shutdown()
            server.server_close()
        self._http.close()

    def seen(self, origin: str, method: str = "GET", fragment: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.log if s.origin == origin and s.method == method and fragment in s.path]

    def _answer(
        self, origin: str, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        blob = _BLOB_RE.search(path.split("?", 1)[0])
        if origin == "api" and path.startswith("/token"):
            scope = parse_qs(urlsplit(path).query).get("scope", [""])[0]
            return 200, {"Content-Type": "application/json"}, json.dumps({"token": token_for(scope)}).encode()
        if origin == "api" and self.bearer and not self._granted(method, path, headers.get("authorization")):
            repo = _REPO_RE.search(path)
            wanted = "pull" if method in ("GET", "HEAD") else "pull,push"
            scope = f',scope="repository:{repo["repo"]}:{wanted}"' if repo else ""
            challenge = f'Bearer realm="http://{self.host}/token",service="gateway"{scope}'
            return 401, {"WWW-Authenticate": challenge}, b""
        if origin == "api" and blob and method == "GET":
            with self._lock:
                throttled, self.throttle = self.throttle > 0, max(0, self.throttle - 1)
            if throttled:
                return 429, {"Retry-After": "0"}, b""
            if self.redirect:
                return 307, {"Location": f"http://{self.storage}{path}"}, b""
        dropped = ("host", "content-length") if self.signed else ("host", "authorization", "content-length")
        sent = {k: v for k, v in headers.items() if k not in dropped}
        if self.ignore_range:
            sent.pop("range", None)
        answer = self._http.request(
            method, f"http://{self.upstream}{path}", headers=sent, content=body or None
        )
        back = {k.lower(): v for k, v in answer.headers.items() if k.lower() not in _HOP}
        if method == "HEAD" and "content-length" in answer.headers:
            back["content-length"] = answer.headers["content-length"]  # the blob's, not this body's
        if "location" in back:
            back["location"] = back["location"].replace(self.upstream, self.host)
        return answer.status_code, back, answer.content

    def _granted(self, method: str, path: str, authorization: str | None) -> bool:
        """Whether a token of ours covers the request: any for ``/v2/``; pull for reads of a
        repository, push for its writes."""
        if authorization is None or not authorization.startswith("Bearer token-for-"):
            return False
        repo = _REPO_RE.search(path)
        if repo is None:
            return True
        name = repo["repo"]
        pushing = "Bearer " + token_for(f"repository:{name}:pull,push")
        pulling = "Bearer " + token_for(f"repository:{name}:pull")
        return authorization == pushing or (method in ("GET", "HEAD") and authorization == pulling)

    def _handler(self, origin: str) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                body = self.rfile.read(int(headers.get("content-length", "0") or 0))
                status, back, data = gateway._answer(origin, self.command, self.path, headers, body)
                with gateway._lock:
                    gateway.log.append(
                        Seen(
                            origin,
                            self.command,
                            self.path,
                            headers.get("authorization"),
                            headers.get("range"),
                            status,
                        )
                    )
                self.send_response(status)
                for key, value in back.items():
                    self.send_header(key, value)
                if "content-length" not in back:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the gateway keeps its own log."""

        return Handler
