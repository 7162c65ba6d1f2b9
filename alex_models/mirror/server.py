"""A Hugging Face Hub-compatible HTTP server over a mirror root: its lifecycle, its request log,
and the signed CDN addresses.

Two listening sockets, as on the Hub: the API origin answers metadata and ``/resolve/`` (plain git
files in place, LFS files by a 302 to the CDN), and the CDN origin, on another port, serves LFS
bytes behind signed, expiring URLs. The real ``huggingface_hub`` client drops the token when it
follows a redirect to another origin, which only a second origin can show.

The protocol followed is the one in HUB_PROTOCOL.md: percent-encoded revisions split before
decoding, ``X-Error-Code`` on every error, ``X-Repo-Commit``/``X-Linked-Etag``/``X-Linked-Size`` on
resolve, absolute ``Link`` headers for tree pages, ``Range`` with 206/416.

Where the rest is: ``handler`` (sockets, parsing, bytes on the wire), ``routes`` (the Hub's answers),
``files`` (whole files and ranges), ``messages`` (what they pass each other), ``faults`` (the
knobs), ``repos`` (the folder layout); the foreground runner is ``alex-models mirror serve``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from alex_models.mirror.catalogue import Catalogue
from alex_models.mirror.faults import Faults
from alex_models.mirror.handler import OriginServer
from alex_models.mirror.messages import Origin, RequestRecord
from alex_models.mirror.metrics import Metrics
from alex_models.mirror.repos import DirectorySource

if TYPE_CHECKING:
    from alex_models.mirror.pullthrough import PullStats

CDN_URL_TTL_SECONDS = 3600
_POLL_INTERVAL = 0.02  # seconds between the serve loop's shutdown checks


class MirrorServer:
    """Serves a mirror root (or another ``Catalogue``) over HTTP on two loopback (or chosen) ports.

    ``port=0``/``cdn_port=0`` pick free ports; ``url`` is the endpoint to give ``HF_ENDPOINT``.
    ``faults`` may be changed while the server runs; ``log`` lists every finished request.
    ``pull_stats`` (pull-through's counters) adds them to ``/metrics``.
    Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(
        self,
        root: Path | Catalogue,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cdn_port: int = 0,
        faults: Faults | None = None,
        page_size: int = 1000,
        expand_page_size: int = 50,
        on_request: Callable[[RequestRecord], None] | None = None,
        pull_stats: Callable[[], PullStats] | None = None,
    ) -> None:
        self.source: Catalogue = DirectorySource(root) if isinstance(root, Path) else root
        self.metrics = Metrics(pull_stats)
        self._draining = False
        self.faults = faults if faults is not None else Faults()
        self.page_size = page_size
        self.expand_page_size = expand_page_size
        self._on_request = on_request
        self._log: list[RequestRecord] = []
        self._log_changed = threading.Condition()
        self._signing_key = secrets.token_bytes(32)
        self._api = OriginServer(host, port, self, "api")
        self._cdn = OriginServer(host, cdn_port, self, "cdn")
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

    def connections(self, origin: Origin) -> int:
        """TCP connections ``origin`` (the API or the CDN) accepted so far: how many a client opened."""
        return (self._api if origin == "api" else self._cdn).accepted

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
        self._close_listeners()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def _close_listeners(self) -> None:
        """End both serve loops and close the listening sockets; answers being sent go on."""
        for server in (self._api, self._cdn):
            if self._threads:
                server.shutdown()
            server.server_close()

    def drain(self, timeout: float, stopping: Callable[[], None] | None = None) -> int:
        """Stop taking connections, call ``stopping`` (pull-through's ``close``: requests waiting on
        a download get their error answer), then wait up to ``timeout`` seconds for the requests
        being answered to finish (each connection closes after its answer). Returns how many were
        still running at the end (0: all finished); ``stop()`` then cuts them."""
        self._draining = True
        self._close_listeners()
        if stopping is not None:
            stopping()
        deadline = time.monotonic() + timeout
        while self.metrics.in_flight and time.monotonic() < deadline:
            time.sleep(_POLL_INTERVAL)  # short sleeps: a second signal still interrupts the wait
        return self.metrics.in_flight

    @property
    def draining(self) -> bool:
        return self._draining

    def request_started(self) -> None:
        self.metrics.started()

    def metrics_text(self) -> str:
        return self.metrics.render()

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def record(self, record: RequestRecord) -> None:
        self.metrics.finished(record)
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
