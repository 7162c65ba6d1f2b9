"""An object store as a remote: ``s3://bucket/prefix`` (AWS and S3-compatibles), and ``gs://``,
``az://`` as obstore opens them.

Credentials, endpoint and region come from each ecosystem's variables, which obstore reads
(``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``,
``AWS_REGION``…); plain ``http://`` is allowed when the endpoint says so (a server on the LAN).
obstore reads no ``AWS_PROFILE``: a profile's static keys and region are read here from the
shared files (``~/.aws/credentials``, ``~/.aws/config``).

Uploads never replace an object with other bytes: a blob that fits one part is one PUT with
``If-None-Match: *``; a larger one is a multipart upload, which S3 shows under its name only
once complete (a kill leaves no half object, only parts a bucket lifecycle rule reclaims), made
after a HEAD found the name free and asked again every ``TAKEN_CHECK`` bytes and before the last
part: another host completed it meanwhile, and the upload is aborted. obstore 0.12 cannot make
the completion itself conditional (its ``mode="create"`` falls back to one PUT held in memory,
its conditional copy is one UploadPartCopy of at most 5 GiB), so two uploads of one blob that
both pass their last HEAD (they send their last parts at the same time) both complete: the
later writes the same bytes again (the name is their SHA256, checked when they entered the
pusher's store), and no reader sees other bytes.
"""

from __future__ import annotations

import configparser
import contextlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError
from obstore.store import from_url

from alex_models.errors import IntegrityError, RemoteError, UsageError, UserError
from alex_models.sources.base import Transient
from alex_models.sources.objects import ObjectStoreSource, size_of, translated
from alex_models.store import blob_key

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, S3Config, S3Credential

PART_SIZE = 8 * 1024 * 1024
"""A multipart upload's smallest part (S3's minimum is 5 MiB); a blob up to this size is one PUT.
Larger blobs get larger parts, so none needs more than S3's 10,000 (``part_size_for``)."""
MAX_PARTS = 10_000
CONCURRENCY = 4
"""Parts in flight per upload, at most: 8 MiB parts, 4 at once, sent as fast as 16 MiB, 6 at once
here (512 MiB to rclone serve s3 in 4.6 s against 4.8 s) in less than half the memory."""
PARTS_BUFFER = 48 * 1024 * 1024
"""Bytes of parts in flight, at most, unless two parts are larger: what keeps a push's peak memory
near 110 MB whatever the blob's size (larger parts, fewer at once)."""
TAKEN_CHECK = 1024 * 1024 * 1024
"""Bytes a multipart upload sends between two HEADs asking whether another host completed the
object meanwhile (then it stops): a few cheap requests per blob, at most this much sent in vain."""
READ_TIMEOUT = timedelta(seconds=60)
"""A read that waits this long for a byte fails (and is retried): the end of a stalled GET."""
REQUEST_TIMEOUT = timedelta(days=1)
"""How long one request through obstore may take in all. Its default, 30 s, cut every GET and part
upload that took longer: a blob read whole from a server that ignores Range then started again
from byte 0, so 8 hosts syncing 2 GiB at once made the server send 1.8x the bytes. Stalls are
READ_TIMEOUT's to end. (An S3 blob is read over the downloader's HTTP client: ``SignedReader``.)"""
_SCHEMES = ("s3", "gs", "az")
_LIST_CHUNK = 1000


class ObjectStoreRemote:
    """The bucket and prefix of ``url``, opened in ``store``."""

    def __init__(
        self, url: str, store: ObjectStore, *, part_size: int = PART_SIZE, concurrency: int = CONCURRENCY
    ) -> None:
        self._url = url
        self.store = store
        self.part_size = part_size
        self.concurrency = concurrency
        self._multipart = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, part_size: int = PART_SIZE, concurrency: int = CONCURRENCY
    ) -> ObjectStoreRemote:
        """The remote at ``s3://bucket/prefix`` (or ``gs://``, ``az://``); a URL without a bucket,
        or with credentials in it, is a usage error."""
        scheme, _, rest = url.partition("://")
        rest = rest.rstrip("/")
        url = f"{scheme}://{rest}"
        bucket = rest.split("/", 1)[0]
        if scheme.lower() not in _SCHEMES or not bucket:
            raise UsageError(f"{url!r} names no bucket", hint=f"write {scheme}://BUCKET[/PREFIX]")
        if "@" in bucket or "?" in rest:
            raise UsageError(
                f"{scheme}://… holds more than a bucket and a prefix",
                hint="credentials come from the environment (AWS_ACCESS_KEY_ID…), never from the URL",
            )
        options: ClientConfig = {"read_timeout": READ_TIMEOUT, "timeout": REQUEST_TIMEOUT}
        if _endpoint().startswith("http://"):
            options["allow_http"] = True
        profile = _Profile.named(url) if scheme.lower() == "s3" else None
        config: S3Config | None = (
            {"region": profile.region} if profile is not None and profile.region else None
        )
        try:
            store = from_url(
                url,
                client_options=options,
                retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=30)},
                config=config,
                credential_provider=profile,
            )
        except (BaseError, ValueError) as exc:
            raise UsageError(
                f"{url}: cannot open it: {str(exc).splitlines()[0]}",
                hint="check the URL and the AWS_* (or GOOGLE_*/AZURE_*) variables",
            ) from None
        return cls(url, store, part_size=part_size, concurrency=concurrency)

    @property
    def url(self) -> str:
        return self._url

    @property
    def local(self) -> bool:
        return False

    def source(self) -> ObjectStoreSource:
        return ObjectStoreSource(self._url, self.store, blob_key)

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """One listing of ``blobs/sha256/`` (a request per thousand objects), which also finds a
        missing bucket where a HEAD could not tell it from a missing object."""
        wanted = set(digests)
        found: dict[str, int] = {}
        with self._calls("blobs/sha256/"):
            for page in obstore.list(self.store, "blobs/sha256/", chunk_size=_LIST_CHUNK):
                for meta in page:
                    digest = meta["path"].rsplit("/", 1)[-1]
                    if digest in wanted and meta["path"] == blob_key(digest):
                        found[digest] = meta["size"]
        return found

    def upload(self, sha256: str, size: int, path: Path, advanced: Callable[[int], None]) -> bool:
        key = blob_key(sha256)
        with self._calls(key):
            there = self._size_of(key)
        if there is not None:
            self._check_size(key, there, size)
            return False
        with path.open("rb") as file:  # opened here: a local failure is not the remote's
            if size <= self.part_size:  # one PUT, created only if absent
                data = file.read()
                with self._calls(key):
                    try:
                        obstore.put(self.store, key, data, mode="create")
                    except (AlreadyExistsError, PreconditionError):
                        return False  # another host put it since the HEAD
                advanced(size)
                return True
            part = part_size_for(size, self.part_size)
            in_flight = max(2, min(self.concurrency, PARTS_BUFFER // part))
            # One multipart upload at a time: its parts already fill the link, and the memory they
            # hold is then bounded for the whole push, whatever its --jobs.
            with self._multipart, self._calls(key):
                pieces = _pieces(file, part, advanced, taken=lambda: self._taken(key))
                try:
                    obstore.put(self.store, key, pieces, chunk_size=part, max_concurrency=in_flight)
                except _Taken:  # another host completed it meanwhile: this upload was aborted
                    self._check_size(key, self._size_of(key), size)
                    return False
                self._check_size(key, self._size_of(key), size)
        return True

    def write(self, key: str, data: bytes) -> None:
        with self._calls(key):
            obstore.put(self.store, key, data)

    def close(self) -> None:
        """Nothing to release: the store's connections close when it is dropped."""

    @contextlib.contextmanager
    def _calls(self, key: str) -> Iterator[None]:
        """The remote's own requests: retried by obstore already, so a network failure ends the
        command (exit 4); a rerun resumes, as only whole objects ever appear."""
        try:
            with translated(self._url, key):
                yield
        except Transient as exc:
            raise RemoteError(
                str(exc), hint="check the network and AWS_ENDPOINT_URL, then run the same command again"
            ) from None

    def _size_of(self, key: str) -> int | None:
        return size_of(self.store, key)

    def _taken(self, key: str) -> bool:
        """Whether an object is under ``key`` now, asked from inside an upload's iteration: obstore
        drives that on its own runtime, which cannot serve another call, so a thread asks."""
        with ThreadPoolExecutor(1) as asking:
            return asking.submit(self._size_of, key).result() is not None

    def _check_size(self, key: str, there: int | None, size: int) -> None:
        if there != size:
            raise IntegrityError(
                f"{self._url}/{key} holds {there} bytes, the blob has {size}",
                hint="that object is damaged: delete it, then push again",
            )


def _endpoint() -> str:
    """The S3 endpoint the environment names, as obstore reads it (the service-specific first)."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"):
        if os.environ.get(name):
            return os.environ[name]
    return ""


def part_size_for(size: int, smallest: int = PART_SIZE) -> int:
    """The part size for a blob of ``size`` bytes: ``smallest``, or the whole MiB that keeps it
    within S3's 10,000 parts (a 200 GB file: 20 MiB parts)."""
    needed = -(-size // MAX_PARTS)
    return max(smallest, -(-needed // (1024 * 1024)) * 1024 * 1024)


def _pieces(
    file: BinaryIO, size: int, advanced: Callable[[int], None], *, taken: Callable[[], bool]
) -> Iterator[bytes]:
    """The file in pieces of ``size``, each counted as it is handed to the upload. Every
    ``TAKEN_CHECK`` bytes and before the last piece, ``taken()`` asks whether another host
    completed the object meanwhile: then ``_Taken`` ends the iteration, and with it the upload,
    which obstore aborts (never completed)."""
    piece, unchecked = file.read(size), 0
    while piece:
        following = file.read(size)
        if not following or unchecked >= TAKEN_CHECK:
            if taken():
                raise _Taken
            unchecked = 0
        yield piece
        unchecked += len(piece)
        advanced(len(piece))
        piece = following


class _Taken(Exception):
    """Another host completed the object this multipart upload was sending."""


class _Profile:
    """The static keys (and region) of the profile ``AWS_PROFILE`` names, when no keys are in the
    environment: obstore's credential provider. SSO and role profiles are not read: exporting
    their keys (``aws configure export-credentials --format env``) serves them."""

    def __init__(self, credential: S3Credential, region: str | None) -> None:
        self.credential = credential
        self.region = region

    def __call__(self) -> S3Credential:
        return self.credential

    @classmethod
    def named(cls, url: str) -> _Profile | None:
        name = os.environ.get("AWS_PROFILE")
        if not name or os.environ.get("AWS_ACCESS_KEY_ID"):
            return None
        aws = Path.home() / ".aws"
        path = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or aws / "credentials")
        keys = _ini(path).get(name, {})
        if not keys.get("aws_access_key_id") or not keys.get("aws_secret_access_key"):
            raise UserError(
                f"{url}: AWS_PROFILE={name}, but {path} holds no keys for that profile",
                hint="add its aws_access_key_id and aws_secret_access_key there, or set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY (for an SSO or role profile: aws configure export-credentials)",
            )
        config = _ini(Path(os.environ.get("AWS_CONFIG_FILE") or aws / "config"))
        region = config.get(f"profile {name}", config.get(name, {})).get("region")
        credential: S3Credential = {
            "access_key_id": keys["aws_access_key_id"],
            "secret_access_key": keys["aws_secret_access_key"],
            "token": keys.get("aws_session_token"),
            "expires_at": None,
        }
        return cls(credential, None if os.environ.get("AWS_REGION") else region)


def _ini(path: Path) -> dict[str, dict[str, str]]:
    """The sections of an AWS shared file; none if it is absent or unreadable as INI."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, OSError):
        return {}
    return {section: dict(parser[section]) for section in parser.sections()}
