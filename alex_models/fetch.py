"""Bytes from HTTP: streamed, hashed while they arrive, retried on transient failures."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import quote

import httpx2

from alex_models import __version__
from alex_models._retry import RetryPolicy, status_verdict
from alex_models.errors import RemoteError

T = TypeVar("T")

USER_AGENT = f"alex-models/{__version__}"
_CHUNK = 1024 * 1024
DEFAULT_TIMEOUT = httpx2.Timeout(60.0, connect=10.0)


def file_url(endpoint: str, repo: str, commit: str, path: str) -> str:
    """The ``resolve`` URL of a file at a commit (LFS files redirect from there to the CDN)."""
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{commit}/{quote(path)}"


def hub_token() -> str | None:
    """The token huggingface_hub would use: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, or the saved login.

    Only huggingface_hub's token lookup loads here, not its API client: a sync that downloads
    starts about 0.07 s sooner.
    """
    from huggingface_hub import get_token  # noqa: PLC0415

    return get_token()


def new_client(headers: Mapping[str, str] | None = None) -> httpx2.Client:
    """The HTTP client alex-models uses: keep-alive, redirects followed (httpx drops the token
    on a redirect to another origin)."""
    return httpx2.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=True, headers=dict(headers or {}))


# Nobody listening, no route, no DNS: a blip clears within a second or not for minutes, so a few
# quick tries, then the error, instead of the full backoff (seconds of silence at a terminal).
_CONNECT_RETRY_WAIT = 0.2


def transport_verdict(exc: Exception) -> tuple[bool, float | None]:
    """Whether a failed request without an HTTP answer is worth another try, and the wait before it."""
    if isinstance(exc, httpx2.ConnectError):
        return True, _CONNECT_RETRY_WAIT
    return isinstance(exc, httpx2.TransportError), None


def _retryable(exc: Exception) -> tuple[bool, float | None]:
    if isinstance(exc, httpx2.HTTPStatusError):
        return status_verdict(exc.response.status_code, exc.response.headers)
    return transport_verdict(exc)


def stream_sha256(
    client: httpx2.Client,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
) -> tuple[int, str]:
    """Download ``url`` without keeping it and return (size, SHA256) of its body."""

    def attempt() -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        with client.stream("GET", url, headers=dict(headers or {})) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        return size, digest.hexdigest()

    return _get(url, attempt, retry)


def read_bytes(
    client: httpx2.Client, url: str, *, limit: int, retry: RetryPolicy | None = None
) -> bytes | None:
    """The body of ``url`` when it is at most ``limit`` bytes; None (having read no more than that)
    when it is longer."""

    def attempt() -> bytes | None:
        body = bytearray()
        with client.stream("GET", url) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes(_CHUNK):
                body += chunk
                if len(body) > limit:
                    return None
        return bytes(body)

    return _get(url, attempt, retry)


def _get(url: str, attempt: Callable[[], T], retry: RetryPolicy | None) -> T:
    """``attempt`` (a GET of ``url``) with retries; what still fails, as one error naming the URL."""
    try:
        return (retry or RetryPolicy()).call(attempt, _retryable)
    except httpx2.HTTPStatusError as exc:
        raise HTTPStatusFailure(url, exc.response.status_code) from None
    except httpx2.HTTPError as exc:
        raise RemoteError(f"GET {without_query(url)} failed: {type(exc).__name__}: {exc}") from None


def content_length(client: httpx2.Client, url: str, *, retry: RetryPolicy | None = None) -> int | None:
    """The size a HEAD reports for ``url``, or None when the server does not say."""

    def attempt() -> int | None:
        response = client.head(url)
        response.raise_for_status()
        value = response.headers.get("Content-Length")
        return int(value) if value is not None and value.isdigit() else None

    try:
        return (retry or RetryPolicy()).call(attempt, _retryable)
    except httpx2.HTTPError:
        return None  # a server that refuses HEAD still serves GET; the caller downloads instead


class HTTPStatusFailure(RemoteError):
    """A server answered an error status (after retries, for the retryable ones)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(
            f"GET {without_query(url)} answered {status}", hint="retry later" if status >= 500 else None
        )
        self.url = url
        self.status = status


def without_query(url: str | httpx2.URL) -> str:
    """``url`` without its query, which may carry signatures (a CDN's): for messages."""
    return str(url).split("?", 1)[0]
