"""A stand-in for llama-server's read-only endpoints, on loopback, for the default suite.

It answers ``/health``, ``/v1/models`` and ``/props`` (``?model=NAME`` in router mode) as
llama-server does, from what the test says it serves; the ``runtime`` tests run the real one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit


class FakeLlamaServer:
    """``models`` maps each served alias to the file it loaded. One alias: a plain llama-server
    (``/props`` names its file); ``router=True``: a router, whose own ``/props`` names none."""

    def __init__(self, port: int, models: Mapping[str, Path], *, router: bool = False) -> None:
        self.models = dict(models)
        self.router = router
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        # A short poll interval: shutdown() waits for it, once per test server.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> FakeLlamaServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        if path == "/health":
            return 200, {"status": "ok"}
        if path == "/v1/models":
            return 200, {"object": "list", "data": [{"id": name, "object": "model"} for name in self.models]}
        if path == "/props":
            wanted = query.get("model", [None])[0]
            if self.router and wanted is None:
                return 200, {"role": "router"}
            name = wanted or next(iter(self.models))
            if name not in self.models:
                return 400, {"error": {"message": f"model {name} not found"}}
            return 200, {"model_path": str(self.models[name]), "role": "model"}
        return 404, {"error": {"message": "File Not Found"}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        answer = self._answer

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                status, body = answer(parts.path, parse_qs(parts.query))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test's output is the place for failures

        return Handler
