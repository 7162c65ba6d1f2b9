"""A small client of the OCI distribution API: one repository of one registry.

What it does, by the spec's endpoints: ``GET /v2/`` (is it a registry, and what auth does it
want), ``HEAD /v2/<name>/blobs/<digest>`` (which blobs it holds), uploads (``POST …/blobs/uploads/``
then one ``PUT ?digest=`` for a blob up to ``chunk_size``; ``PATCH`` pieces of ``chunk_size`` then
``PUT`` for a larger one; bodies stream from the file, so memory stays bounded), cross-repository
mounts (``POST …/blobs/uploads/?mount=<digest>&from=<repository>``) and
``PUT /v2/<name>/manifests/<tag>``; ``GET`` of a manifest and of a small blob (its config) for
``oci.artifact``. Blob bytes are read by ``sources.oci`` through the downloader.

Every digest the registry confirms (``Docker-Content-Digest``) must be the one sent. A status maps
to our errors: 401/403 after the challenge is answered are access denied (exit 4, naming the
registry, never the secret); 408/429/5xx and dropped connections are retried with backoff, then
a network error (exit 4); anything else the registry should not have answered is a remote error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx2

from alex_models._retry import RetryPolicy, status_verdict
from alex_models._units import MiB
from alex_models.errors import IntegrityError, RemoteError, UsageError
from alex_models.fetch import USER_AGENT, new_client, transport_verdict
from alex_models.oci.auth import AccessDenied, Authorizer, login_for

T = TypeVar("T")

CHUNK_SIZE = 64 * MiB
"""A blob up to this size is sent in one PUT; a larger one in PATCH pieces of this size (some
registries and proxies refuse larger request bodies)."""
_READ_SIZE = 1 * MiB
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
# The distribution spec's repository name grammar: lowercase components joined by "/".
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_SCHEMES = {"oci": None, "oci+http": "http", "oci+https": "https"}


@dataclass(frozen=True)
class Address:
    """``oci://REGISTRY/REPOSITORY``: plain HTTP for a loopback registry or ``oci+http://``."""

    scheme: str
    registry: str
    """``host[:port]``, as credentials files and messages name it."""
    repository: str

    @classmethod
    def parse(cls, url: str) -> Address:
        """The address of ``url``; one with a tag, a digest, credentials or a malformed repository
        is a usage error (push chooses the tags; secrets never go in a URL)."""
        kind, _, rest = url.partition("://")
        registry, _, repository = rest.rstrip("/").partition("/")
        if (
            kind.lower() not in _SCHEMES
            or not registry
            or "@" in rest
            or "?" in rest
            or not _REPOSITORY_RE.fullmatch(repository)
        ):
            raise UsageError(
                f"{url!r} is not a registry repository",
                hint="write oci://REGISTRY/REPOSITORY (lowercase, no tag: push tags each model by its "
                "name; credentials come from ~/.docker/config.json)",
            )
        host = registry.rsplit(":", 1)[0].strip("[]").lower()
        loopback = host in ("localhost", "::1") or host.startswith("127.")
        scheme = _SCHEMES[kind.lower()] or ("http" if loopback else "https")
        return cls(scheme, registry.lower(), repository)

    @property
    def url(self) -> str:
        return f"oci://{self.registry}/{self.repository}"

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.registry}"

    def blob_url(self, sha256: str) -> str:
        return f"{self.origin}/v2/{self.repository}/blobs/sha256:{sha256}"


class Registry:
    """One repository, opened for one command."""

    def __init__(
        self,
        address: Address,
        *,
        chunk_size: int = CHUNK_SIZE,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.address = address
        self.chunk_size = chunk_size
        self.retry = retry or RetryPolicy()
        self.client = new_client({"User-Agent": USER_AGENT})  # redirects: decided per request
        # Pull rights first: a push's first upload is challenged for "pull,push", and that
        # challenge's scope is what the token service is then asked for.
        scope = f"repository:{address.repository}:pull"
        self.auth = Authorizer(address.registry, login_for(address.registry), scope)
        self._pinged = False

    def ping(self) -> None:
        """``GET /v2/`` once: a server that is no registry is named as such, and the session's
        authorization is learned before requests run in parallel."""
        if self._pinged:
            return
        response = self._call(lambda: self._send("GET", f"{self.address.origin}/v2/"))
        if response.status_code != 200:
            raise RemoteError(
                f"{self.address.registry}: /v2/ answered {response.status_code}: not an OCI registry",
                hint="check the registry's address in the oci:// URL",
            )
        self._pinged = True

    def blob_size(self, sha256: str) -> int | None:
        """The size of the blob the repository holds under ``sha256``, or None if it holds none."""
        self.ping()
        response = self._call(lambda: self._send("HEAD", self.address.blob_url(sha256)))
        if response.status_code == 404:
            return None
        length = response.headers.get("Content-Length", "")
        if response.status_code != 200 or not length.isdecimal():
            raise self._unexpected(f"HEAD of blob sha256:{sha256}", response)
        return int(length)

    def mount(self, sha256: str, sources: Sequence[str]) -> str | None:
        """Ask for the blob ``sha256`` from each repository of ``sources`` (of this registry) in
        turn without sending it: None once one mounted it (201); else the ``Location`` of an
        upload session for ``upload`` to go on with: the one the registry opened instead (202: it
        lacks the blob there, or will not mount), or a fresh one when we may pull none of them
        (a refused source is no error, only a blob to send)."""
        url = httpx2.URL(f"{self.address.origin}/v2/{self.address.repository}/blobs/uploads/")
        for source in sources:
            asked = str(url.copy_merge_params({"mount": f"sha256:{sha256}", "from": source}))
            try:
                response = self._call(partial(self._send, "POST", asked))
            except AccessDenied:
                continue
            if response.status_code == 201:
                self._confirmed(f"sha256:{sha256}", response, f"blob sha256:{sha256}")
                return None
            if response.status_code != 202:
                raise self._unexpected(f"mount of blob sha256:{sha256} from {source}", response)
            return self._next(response)
        return self._call(self._start_upload)

    def upload(
        self,
        sha256: str,
        size: int,
        path: Path,
        advanced: Callable[[int], None],
        location: str | None = None,
    ) -> None:
        """Send the file at ``path`` as the blob ``sha256``, in the session at ``location`` (one
        ``mount`` opened) or a new one: the registry stores it under that name only once every
        byte arrived and hashed to it."""
        opened = [location] if location else []  # a retry starts a session of its own

        def body(start: int, length: int) -> Callable[[], Iterator[bytes]]:
            return lambda: _file_pieces(path, start, length, advanced)

        def session() -> None:
            location = opened.pop() if opened else self._start_upload()
            start = 0
            while size > self.chunk_size and start < size:
                length = min(self.chunk_size, size - start)
                headers = {"Content-Range": f"{start}-{start + length - 1}"}
                location = self._next(self._write(location, "PATCH", body(start, length), length, headers))
                start += length
            tail = body(0, size) if start == 0 else (lambda: iter([b""]))
            self._finish(location, sha256, tail, size - start)

        self._call(session)

    def put_blob(self, data: bytes) -> str:
        """Store the small blob ``data`` (a config) unless the repository holds it; its SHA256."""
        sha256 = hashlib.sha256(data).hexdigest()
        if self.blob_size(sha256) != len(data):
            self._call(lambda: self._finish(self._start_upload(), sha256, lambda: iter([data]), len(data)))
        return sha256

    def put_manifest(self, reference: str, body: bytes, media_type: str) -> str:
        """Store the manifest ``body`` under the tag ``reference``; its digest, as the registry
        confirmed it."""
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        url = f"{self.address.origin}/v2/{self.address.repository}/manifests/{reference}"
        headers = {"Content-Type": media_type, "Content-Length": str(len(body))}  # not chunked
        response = self._call(lambda: self._send("PUT", url, content=lambda: iter([body]), headers=headers))
        if response.status_code != 201:
            raise self._unexpected(f"PUT of manifest {reference}", response)
        self._confirmed(digest, response, f"manifest {reference}")
        return digest

    def get_manifest(self, reference: str) -> tuple[bytes, str] | None:
        """The manifest held under ``reference`` (a tag, or ``sha256:…``) and its media type; None
        when the repository or the reference is unknown (404). Its digest, if the registry says it
        (``Docker-Content-Digest``), must be the one of the bytes received."""
        self.ping()
        url = f"{self.address.origin}/v2/{self.address.repository}/manifests/{reference}"
        accept = {"Accept": ", ".join(MANIFEST_TYPES)}
        response = self._call(lambda: self._send("GET", url, headers=accept))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unexpected(f"GET of manifest {reference}", response)
        digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        self._confirmed(digest, response, f"manifest {reference}")
        return response.content, response.headers.get("Content-Type", "").split(";")[0].strip()

    def get_blob(self, sha256: str, size: int) -> bytes | None:
        """The small blob ``sha256`` (a config) whole, or None when the repository lacks it; bytes
        of another size or hash are an integrity error."""
        self.ping()
        response = self._call(lambda: self._send("GET", self.address.blob_url(sha256)))
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unexpected(f"GET of blob sha256:{sha256}", response)
        if len(response.content) != size or hashlib.sha256(response.content).hexdigest() != sha256:
            raise IntegrityError(
                f"{self.address.url}: blob sha256:{sha256} came back as other bytes",
                hint="the registry's storage is damaged; report it to its operators",
            )
        return response.content

    def close(self) -> None:
        self.client.close()

    def _start_upload(self) -> str:
        response = self._send("POST", f"{self.address.origin}/v2/{self.address.repository}/blobs/uploads/")
        if response.status_code != 202:
            raise self._unexpected("POST of an upload", response)
        return self._next(response)

    def _next(self, response: httpx2.Response) -> str:
        """Where an upload goes on: the ``Location`` of the last answer, made absolute."""
        location = response.headers.get("Location")
        if not location:
            raise self._unexpected("an upload step (no Location)", response)
        return str(response.url.join(location))

    def _write(
        self,
        location: str,
        method: str,
        content: Callable[[], Iterator[bytes]],
        length: int,
        headers: Mapping[str, str],
    ) -> httpx2.Response:
        sent = {"Content-Type": "application/octet-stream", "Content-Length": str(length), **headers}
        response = self._send(method, location, content=content, headers=sent)
        if response.status_code != (201 if method == "PUT" else 202):
            raise self._unexpected(f"{method} of an upload", response)
        return response

    def _finish(
        self, location: str, sha256: str, content: Callable[[], Iterator[bytes]], length: int
    ) -> None:
        url = str(httpx2.URL(location).copy_merge_params({"digest": f"sha256:{sha256}"}))
        response = self._write(url, "PUT", content, length, {})
        self._confirmed(f"sha256:{sha256}", response, f"blob sha256:{sha256}")

    def _confirmed(self, digest: str, response: httpx2.Response, what: str) -> None:
        said = response.headers.get("Docker-Content-Digest")
        if said is not None and said != digest:
            raise RemoteError(
                f"{self.address.url}: stored {what} as {said}",
                hint="the registry altered the bytes it was sent; report it to its operators",
            )

    def _send(
        self,
        method: str,
        url: str,
        *,
        content: Callable[[], Iterator[bytes]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx2.Response:
        """One request, answered: a 401 challenge is answered once (a token, or our login) and the
        request sent again; a denial after that, or a status worth retrying, is raised."""
        ours = httpx2.URL(url).netloc.decode("ascii").lower() == self.address.registry
        for _ in range(3):
            auth = dict(self.auth.header) if ours else {}
            try:
                response = self.client.request(
                    method,
                    url,
                    content=content() if content is not None else None,
                    headers={**(headers or {}), **auth},
                    follow_redirects=method in ("GET", "HEAD"),
                )
            except httpx2.TransportError as exc:
                raise _Transient(f"{self.address.registry}: {type(exc).__name__}", exc) from None
            if response.status_code != 401 or not ours:
                break
            if not self.auth.answer(self.client, response, auth.get("Authorization")):
                raise self.auth.denied(401)
        status = response.status_code
        if status in (401, 403):
            raise self.auth.denied(status)
        again, retry_after = status_verdict(status, response.headers)
        if again:
            raise _Transient(f"{self.address.registry} answered {status}", retry_after=retry_after)
        return response

    def _call(self, action: Callable[[], T]) -> T:
        """``action`` with retries on what is worth another try; then a network error (exit 4)."""
        try:
            return self.retry.call(action, _verdict)
        except _Transient as exc:
            raise RemoteError(str(exc), hint="check the network, then run the same command again") from None

    def _unexpected(self, what: str, response: httpx2.Response) -> RemoteError:
        code = _error_code(response)
        return RemoteError(
            f"{self.address.url}: {what} answered {response.status_code}" + (f" ({code})" if code else ""),
            hint="the registry refused the request; check the repository name and the registry's logs",
        )


class _Transient(Exception):
    """A request worth sending again (the retry policy decides); ``wait`` is the server's wish."""

    def __init__(
        self, message: str, failure: Exception | None = None, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.wait = transport_verdict(failure)[1] if failure is not None else retry_after


def _verdict(exc: Exception) -> tuple[bool, float | None]:
    return (True, exc.wait) if isinstance(exc, _Transient) else (False, None)


def _error_code(response: httpx2.Response) -> str:
    """The first error code of the spec's JSON error body (``BLOB_UNKNOWN``…), if any."""
    try:
        errors = response.json().get("errors") or []
        return str(errors[0].get("code", "")) if errors else ""
    except (ValueError, AttributeError, TypeError, IndexError):
        return ""


def _file_pieces(path: Path, start: int, length: int, advanced: Callable[[int], None]) -> Iterator[bytes]:
    """``length`` bytes of the file from ``start``, read a MiB at a time and counted as sent."""
    with path.open("rb") as file:
        file.seek(start)
        left = length
        while left:
            piece = file.read(min(_READ_SIZE, left))
            if not piece:
                raise IntegrityError(f"{path} ended {left} bytes early", hint="run 'alex-models verify'")
            left -= len(piece)
            advanced(len(piece))
            yield piece
