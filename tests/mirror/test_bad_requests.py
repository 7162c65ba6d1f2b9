"""Malformed requests, sent raw to the mirror on loopback: each gets an answer in the Hub's error
shape (§5.1), is counted in /metrics and logged like any request, prints nothing on the mirror's
stderr, and the server goes on serving."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass

import pytest

from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.mirror.access import access_log_line
from alex_models.mirror.handler import MAX_BODY

REPO = "org/model"
PATHS_INFO = f"/api/models/{REPO}/paths-info/main"
TIMEOUT = 5.0  # the old code left some of these unanswered: fail, do not hang


@dataclass(frozen=True)
class Case:
    raw: bytes
    status: int
    code: str | None = "BadRequest"
    keep_alive: bool = False
    """The body was read whole, so the connection can carry the next request."""
    half_close: bool = False


def request(line: str, *headers: str, body: bytes = b"", host: str | None = "127.0.0.1") -> bytes:
    head = [line, *([f"Host: {host}"] if host is not None else []), *headers]
    return "".join(f"{h}\r\n" for h in head).encode("latin-1") + b"\r\n" + body


def post_json(body: bytes) -> bytes:
    return request(
        f"POST {PATHS_INFO} HTTP/1.1",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        body=body,
    )


def post_form(*headers: str, body: bytes = b"") -> bytes:
    return request(
        f"POST {PATHS_INFO} HTTP/1.1", "Content-Type: application/x-www-form-urlencoded", *headers, body=body
    )


CASES = {
    "json-syntax": Case(post_json(b'{"paths": ["config.json"'), 400, keep_alive=True),
    "json-not-utf8": Case(post_json(b'{"paths": ["\xff"]}'), 400, keep_alive=True),
    "json-not-an-object": Case(post_json(b'["config.json"]'), 400, keep_alive=True),
    "json-paths-not-a-list": Case(post_json(b'{"paths": 5}'), 400, keep_alive=True),
    "length-not-a-number": Case(post_form("Content-Length: abc", body=b"paths=x"), 400),
    "length-negative": Case(post_form("Content-Length: -1", body=b"paths=x"), 400),
    "length-twice": Case(post_form("Content-Length: 2", "Content-Length: 7", body=b"paths=x"), 400),
    "length-huge": Case(post_form(f"Content-Length: {10**12}"), 413, code=None),
    "length-over-limit-expect": Case(
        post_form(f"Content-Length: {MAX_BODY + 1}", "Expect: 100-continue"), 413, code=None
    ),
    "chunked": Case(
        post_form("Transfer-Encoding: chunked", body=b"7\r\npaths=x\r\n0\r\n\r\n"), 411, code=None
    ),
    "body-cut-short": Case(post_form("Content-Length: 100", body=b"paths=config.json"), 400, half_close=True),
    "target": Case(request(f"GET http://[x/api/models/{REPO} HTTP/1.1"), 400),
    "host-bracket": Case(request(f"GET /{REPO}/resolve/main/weights.gguf HTTP/1.1", host="[::1"), 400),
    "host-twice": Case(request(f"GET /api/models/{REPO} HTTP/1.1", "Host: other.example"), 400),
    "request-line": Case(request(f"GET /api/models/{REPO} extra HTTP/1.1"), 400),
    "method": Case(request(f"BREW /api/models/{REPO} HTTP/1.1"), 501, code=None),
    "header-line-too-long": Case(
        request(f"GET /api/models/{REPO} HTTP/1.1", "X-Big: " + "a" * 70_000), 431, None
    ),
}


@pytest.fixture
def served(mirror_root: MirrorRoot, mirror: MirrorServer) -> tuple[MirrorServer, str]:
    """The mirror with one repo: a plain ``config.json`` and an LFS ``weights.gguf``, and its commit."""
    mirror_root.create_repo(REPO, lfs_threshold=100)
    commit = mirror_root.commit(REPO, {"config.json": b"{}", "weights.gguf": bytes(1000)})
    return mirror, commit


def exchange(
    sock: socket.socket, raw: bytes, *, half_close: bool = False
) -> tuple[http.client.HTTPResponse, bytes]:
    """Send ``raw``; the answer and its body. Its first bytes must be the final status: a body that
    is refused gets no "100 Continue" first (the client would send it)."""
    sock.sendall(raw)
    if half_close:
        sock.shutdown(socket.SHUT_WR)
    first = sock.recv(12, socket.MSG_PEEK)
    assert first.startswith(b"HTTP/1.1 ")
    assert first != b"HTTP/1.1 100"
    response = http.client.HTTPResponse(sock, method=raw.split(b" ", 1)[0].decode("latin-1"))
    response.begin()
    return response, response.read()


def get(sock: socket.socket, target: str) -> tuple[http.client.HTTPResponse, bytes]:
    return exchange(sock, request(f"GET {target} HTTP/1.1"))


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_malformed_request_gets_the_hubs_error_answer_and_the_server_goes_on(
    served: tuple[MirrorServer, str], capfd: pytest.CaptureFixture[str], case: Case
) -> None:
    server, _ = served
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        response, body = exchange(sock, case.raw, half_close=case.half_close)

        assert response.status == case.status
        assert response.getheader("Content-Type", "").startswith("application/json")
        assert response.getheader("X-Error-Code") == case.code
        assert json.loads(body) == {"error": response.getheader("X-Error-Message")}
        if case.keep_alive:  # the body was read whole: the same connection carries the next request
            assert get(sock, f"/api/models/{REPO}")[0].status == 200
        else:  # the rest of what was sent cannot be told from a next request: closed
            assert response.getheader("Connection") == "close"
            assert sock.recv(1) == b""
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        assert get(sock, f"/api/models/{REPO}")[0].status == 200

    # Logged (the access log writes each record of this log) and counted, like any request.
    log = server.wait_log(lambda records: len(records) == (3 if case.keep_alive else 2))
    [refused] = [r for r in log if r.status == case.status]
    assert json.loads(access_log_line(refused))["status"] == case.status
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        metrics = get(sock, "/metrics")[1].decode()
    assert f'alex_models_mirror_requests_total{{origin="api",status="{case.status}"}} 1\n' in metrics
    assert "alex_models_mirror_requests_in_flight 1\n" in metrics  # only /metrics itself
    assert capfd.readouterr().err == ""


ODD_NUMBERS = {
    "range-superscript": (f"/{REPO}/resolve/main/config.json", "Range: bytes=\u00b2-", 200),
    "range-5000-digits": (f"/{REPO}/resolve/main/config.json", "Range: bytes=" + "9" * 5000 + "-", 200),
    "cdn-expires-superscript": ("/{repo}/{commit}/weights.gguf?expires=%C2%B2&sig=x", None, 403),
    "cdn-sig-superscript": ("/{repo}/{commit}/weights.gguf?expires=1&sig=%C2%B2", None, 403),
}


@pytest.mark.parametrize(("target", "header", "status"), ODD_NUMBERS.values(), ids=ODD_NUMBERS.keys())
def test_odd_numbers_in_a_range_or_a_cdn_url_get_an_answer_not_a_traceback(
    served: tuple[MirrorServer, str],
    capfd: pytest.CaptureFixture[str],
    target: str,
    header: str | None,
    status: int,
) -> None:
    """A malformed Range is ignored (RFC 9110 §14.2: the whole file); a bad CDN URL is refused."""
    server, commit = served
    port = server.port if header is not None else server.cdn_port
    with socket.create_connection((server.host, port), timeout=TIMEOUT) as sock:
        line = f"GET {target.format(repo=REPO, commit=commit)} HTTP/1.1"
        response, body = exchange(sock, request(line, *([header] if header else [])))

    assert response.status == status
    if status == 200:
        assert body == b"{}"
    assert capfd.readouterr().err == ""
