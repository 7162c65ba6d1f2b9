"""An object store (S3 and compatibles, GCS, Azure, through ``obstore``) as a source.

Not imported by ``sources/__init__``: obstore loads only when a remote of that kind is used.
A range is one GET with ``Range``; the object's size must be the lock's (else it is not the
locked blob: exit 3, nothing stored). ``translated`` says what an obstore failure means, for this
source and for the remote's own calls (``remotes/objects``).

An S3 object is read as an HTTP source is (``SignedReader``): a GET of a URL obstore presigns,
over the downloader's connections, so its ranges come in parallel even from a server that
answers them with 200 (rclone serve s3), which obstore refuses. GCS and Azure are read through
obstore (``ObjectStoreReader``).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx2
import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    GenericError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from alex_models.errors import AlexModelsError, IntegrityError, RemoteError
from alex_models.sources.base import Blob, Missing, Transient, Wire
from alex_models.sources.http import HttpReader, download_headers

if TYPE_CHECKING:
    from obstore import BytesStream
    from obstore.store import ObjectStore

READ_SIZE = 1024 * 1024
"""Bytes handed to the downloader at once (its write size: no copy into its buffer). A 1 GiB sync
from rclone serve s3 took the same wall time with 1, 4 and 16 MiB, and the least CPU (2.6 s
against 2.9 s) and memory (82 MB against 95 and 164) with 1 MiB."""
_OBSTORE_NETWORK = (
    "AWS_PROXY_URL",
    "AWS_PROXY_CA_CERTIFICATE",
    "AWS_PROXY_EXCLUDES",
    "AWS_ALLOW_INVALID_CERTIFICATES",
)
"""Network settings obstore takes from the environment that the downloader's HTTP client would
not have: with any of them set, S3 objects are read through obstore, as the HEAD is."""
SIGNED_FOR = timedelta(hours=1)
"""How long a presigned URL opens. Each GET gets a URL signed just before it, and S3 checks the
time only when a request starts: an hour leaves room for a host clock behind the server's."""

_CREDENTIALS_HINT = (
    "check the credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (GOOGLE_*/AZURE_* for gs://, az://), "
    "the endpoint in AWS_ENDPOINT_URL, and that the bucket exists"
)


_STATUS_RE = re.compile(r"status code: (\d{3})")


def _first_line(exc: BaseException) -> str:
    """obstore's message without its debug dump (the request and the server's XML)."""
    return str(exc).split("\n", 1)[0].split(": <?xml", 1)[0].strip()


def _denied(exc: BaseException) -> bool:
    """A 401 or 403: obstore says so by its type for most calls, only in its message for a listing."""
    status = _STATUS_RE.search(_first_line(exc))
    return isinstance(exc, (PermissionDeniedError, UnauthenticatedError)) or (
        status is not None and status[1] in ("401", "403")
    )


def no_bucket(exc: BaseException) -> bool:
    """S3 answers 404 for a missing bucket too; only the error code in its body tells them apart."""
    return "NoSuchBucket" in str(exc)


def size_of(store: ObjectStore, key: str) -> int | None:
    """The size of the object under ``key``, None if there is none; a missing bucket raises."""
    try:
        return obstore.head(store, key)["size"]
    except FileNotFoundError as exc:
        if no_bucket(exc):
            raise
        # S3 answers a HEAD of a missing bucket with a bare 404: a listing tells them apart.
        next(iter(obstore.list(store, key, chunk_size=1)), None)
        return None


def _missing(url: str, key: str) -> Missing:
    return Missing(f"{url} has no {key}", hint="a remote holds only the blobs pushed to it")


@contextlib.contextmanager
def translated(url: str, key: str) -> Iterator[None]:
    """obstore's failures in the downloader's terms, for ``key`` below the remote ``url``.

    No secret can leak: obstore's messages carry the request's method and URL, never its
    signature, and the denied case uses a message of ours.
    """
    try:
        yield
    except FileNotFoundError as exc:  # NotFoundError is one
        if no_bucket(exc):
            raise RemoteError(f"{url}: the bucket does not exist", hint=_CREDENTIALS_HINT) from None
        raise _missing(url, key) from None
    except (AlreadyExistsError, PreconditionError):
        raise  # the remote's upload decides what these mean
    except BaseError as exc:  # GenericError and the rest: the network, the server
        if no_bucket(exc):
            raise RemoteError(f"{url}: the bucket does not exist", hint=_CREDENTIALS_HINT) from None
        if _denied(exc):
            raise RemoteError(f"{url}: access denied", hint=_CREDENTIALS_HINT) from None
        raise Transient(f"{url}: {_first_line(exc)}") from None


@dataclass(frozen=True)
class ObjectStoreSource:
    """The blobs of the remote ``url`` held in ``store``, each under ``key(sha256)``."""

    url: str
    store: ObjectStore
    key: Callable[[str], str]

    @property
    def name(self) -> str:
        return self.url

    def reader(self, blob: Blob, wire: Wire) -> ObjectStoreReader | SignedReader:
        if isinstance(self.store, S3Store) and not any(os.environ.get(name) for name in _OBSTORE_NETWORK):
            return SignedReader(self, self.store, blob, wire)
        return ObjectStoreReader(self, blob)


def _check_size(source: ObjectStoreSource, blob: Blob, key: str, size: int) -> None:
    if size != blob.size:
        raise IntegrityError(
            f"{blob.label}: {source.url}/{key} holds {size} bytes, the lock pins {blob.size}",
            hint="nothing was stored; that object is damaged: delete it and push again",
        )


class SignedReader(HttpReader):
    """One blob of an S3 bucket over the downloader's HTTP connections: each piece a GET of a URL
    presigned for it (``HttpReader`` reads the body straight from the socket).

    A HEAD through obstore comes first, once: its failures say what is wrong (no bucket, refused
    keys: exit 4 naming the remote, no object: the next source) where a server may answer a
    refused signed URL with a bare 500 (moto does), and the object's size is checked before a
    byte is read. No message shows a signed URL: ``HttpReader``'s drop the query.
    """

    def __init__(self, source: ObjectStoreSource, store: S3Store, blob: Blob, wire: Wire) -> None:
        super().__init__(blob, wire, source.url, download_headers(None))
        self.source = source
        self.store = store
        self.key = source.key(blob.sha256)
        self._checked = False

    def _target(self) -> tuple[str, Mapping[str, str]]:
        with translated(self.source.url, self.key):
            if not self._checked:
                size = size_of(self.store, self.key)
                if size is None:
                    raise _missing(self.source.url, self.key)
                _check_size(self.source, self.blob, self.key, size)
                self._checked = True
            return obstore.sign(self.store, "GET", self.key, SIGNED_FOR), self.headers

    def _check(self, url: str, response: httpx2.Response) -> None:
        if response.status_code in (404, 410):  # deleted since the HEAD: named as the HEAD would
            raise _missing(self.source.url, self.key)
        super()._check(url, response)

    def _range_in_200(self, response: httpx2.Response, start: int, end: int) -> bool:
        """rclone serve s3 answers a ranged GET with 200, the range's bytes and their Content-Range.
        Read as the range when the body's length is the range's, not the object's: no whole
        object can be that long. Its Content-Range, if sent, must then name the range; the whole
        file's SHA256 still guards what enters the store."""
        return response.headers.get("Content-Length") == str(end - start) and end - start != self.blob.size

    def _denied(self, where: str, status: int) -> AlexModelsError:
        return RemoteError(f"{self.source.url}: access denied", hint=_CREDENTIALS_HINT)


class ObjectStoreReader:
    """One blob of a GCS or Azure store: an obstore GET per range asked."""

    def __init__(self, source: ObjectStoreSource, blob: Blob) -> None:
        self.source = source
        self.blob = blob
        self.key = source.key(blob.sha256)

    @contextlib.contextmanager
    def open(self, start: int, end: int) -> Iterator[ObjectBody]:
        whole = start == 0 and end == self.blob.size
        with translated(self.source.url, self.key):
            if whole:
                result = obstore.get(self.source.store, self.key)
            else:
                try:
                    result = obstore.get(self.source.store, self.key, options={"range": (start, end)})
                except GenericError as exc:
                    if "non-partial response" not in str(exc):
                        raise
                    # The server ignored Range and answered 200 (rclone serve s3 does), which obstore
                    # refuses: the whole object then, and the downloader reads the file in one stream.
                    result = obstore.get(self.source.store, self.key)
                    whole = True
            size = result.meta["size"]
            _check_size(self.source, self.blob, self.key, size)
            got = result.range
            if not whole and tuple(got) != (start, end):
                whole = tuple(got) == (0, size)
                if not whole:
                    raise RemoteError(
                        f"{self.blob.label}: asked {self.source.url} for bytes {start}-{end - 1}, "
                        f"it answered bytes {got[0]}-{got[1] - 1}",
                        hint="the server mishandles Range requests; nothing was stored",
                    )
            yield ObjectBody(self.source.url, self.key, result.stream(min_chunk_size=READ_SIZE), whole=whole)


class ObjectBody:
    """A GET's body, in pieces of ``READ_SIZE``."""

    def __init__(self, url: str, key: str, stream: BytesStream, *, whole: bool) -> None:
        self.whole = whole
        self._url = url
        self._key = key
        self._stream = stream
        self._cut = False

    def __iter__(self) -> Iterator[bytes]:
        with translated(self._url, self._key):
            for piece in self._stream:
                if self._cut:
                    return
                yield piece

    def cut(self) -> None:
        """Stop at the next piece. obstore offers no way to abort a blocked read from another
        thread; a stalled one ends by the client's read timeout (``remotes/objects``)."""
        self._cut = True
