"""Real S3 servers for the object-store remote's tests, and what those tests share.

moto's server runs in the test process (objects in memory: keep them small); ``rclone serve s3``
is a separate, disk-backed process. Credentials and the endpoint reach obstore through the
standard AWS variables, as they would on a host.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx2
import obstore
import pytest
from helpers import console_script, free_port, wait_for
from obstore.store import from_url

from alex_models._units import MiB
from alex_models.download import FileJob
from alex_models.remotes.objects import ObjectStoreRemote
from alex_models.sources import Blob, Body, Reader, Source, Wire

SECRET = "s3cr3t-never-shown"
DATA = hashlib.shake_256(b"objects").digest(3 * MiB + 4321)
SHA = hashlib.sha256(DATA).hexdigest()


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str, key: str, secret: str) -> None:
    """What a host's environment says: the keys, the endpoint, the region."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")


def blob_file(tmp_path: Path, data: bytes, name: str = "blob") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def upload(remote: ObjectStoreRemote, data: bytes, path: Path) -> tuple[bool, int]:
    """Upload ``data`` (at ``path``) under its SHA256: whether it was sent, and the bytes counted."""
    sent: list[int] = []
    uploaded = remote.upload(hashlib.sha256(data).hexdigest(), len(data), path, sent.append)
    return uploaded, sum(sent)


def stored(remote: ObjectStoreRemote, key: str) -> bytes:
    return bytes(obstore.get(remote.store, key).bytes())


def keep_versions(endpoint: str, bucket: str) -> None:
    """Turn on the bucket's versioning: every write of a key is kept, so a test sees whether an
    object was ever replaced (moto checks no signature here)."""
    body = (
        b'<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Status>Enabled</Status></VersioningConfiguration>"
    )
    httpx2.put(f"{endpoint}/{bucket}?versioning", content=body, trust_env=False).raise_for_status()


def versions(endpoint: str, bucket: str, key: str) -> list[bytes]:
    """The bytes of every version ever written under ``key`` (with ``keep_versions``), newest
    first, read with the keys of the environment ``use_endpoint`` set."""
    listing = httpx2.get(f"{endpoint}/{bucket}?versions&prefix={key}", trust_env=False)
    listing.raise_for_status()
    space = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    ids = [
        v.findtext(f"{space}VersionId")
        for v in ET.fromstring(listing.content).iter(f"{space}Version")  # noqa: S314 - the test server's own answer
        if v.findtext(f"{space}Key") == key
    ]
    store = from_url(f"s3://{bucket}", client_options={"allow_http": True})  # signed: moto wants it here
    return [bytes(obstore.get(store, key, options={"version": i}).bytes()) for i in ids if i]


def job(*sources: Source, data: bytes = DATA) -> FileJob:
    return FileJob(hashlib.sha256(data).hexdigest(), len(data), sources, "org/model/model.gguf")


@dataclass
class Recorded:
    """A source passed through, the ranges asked of it written down, and the most bodies open at
    once (the object store is real)."""

    inner: Source
    ranges: list[tuple[int, int]] = field(default_factory=list)
    most_at_once: int = 0
    _open: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.inner.name

    def reader(self, blob: Blob, wire: Wire) -> Reader:
        inner = self.inner.reader(blob, wire)
        recorded = self

        class Recording:
            @contextlib.contextmanager
            def open(self, start: int, end: int) -> Iterator[Body]:
                recorded.ranges.append((start, end))
                with inner.open(start, end) as body:
                    with recorded._lock:
                        recorded._open += 1
                        recorded.most_at_once = max(recorded.most_at_once, recorded._open)
                    try:
                        yield body
                    finally:
                        with recorded._lock:
                            recorded._open -= 1

        return Recording()


class Rclone:
    """``rclone serve s3`` over a folder (its buckets are the folder's folders), with our keys."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.endpoint = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        rclone = console_script("rclone")
        addr = self.endpoint.removeprefix("http://")
        self.process = subprocess.Popen(
            [
                str(rclone),
                "serve",
                "s3",
                "--addr",
                addr,
                "--auth-key",
                f"AKIDEXAMPLE,{SECRET}",
                str(self.root),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def answers() -> bool:
            with contextlib.suppress(httpx2.TransportError):
                httpx2.get(self.endpoint, trust_env=False)
                return True
            return False

        wait_for(answers, "rclone serve s3 to listen")

    def kill(self) -> None:
        """Gone at once, its connections with it (a test server over a temporary folder)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()


class Meter:
    """A TCP proxy on 127.0.0.1 in front of a real server (``upstream``, ``http://host:port``): it
    counts the bytes the server sends back (``served``) and those clients send it (``received``),
    and paces each way to ``rate`` bytes a second over all connections when a rate is set, so a
    download or an upload takes long enough to stop midway. Bytes pass through unchanged; a
    client gone mid-answer closes the server's side too."""

    _CHUNK = 64 * 1024

    def __init__(self, upstream: str, rate: float | None = None) -> None:
        self.upstream = upstream.removeprefix("http://").rsplit(":", 1)
        self.rate = rate
        self.served = 0
        self.received = 0
        self._lock = threading.Lock()
        self._next_send = {True: 0.0, False: 0.0}
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._closed = threading.Event()

    def __enter__(self) -> Meter:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection((self.upstream[0], int(self.upstream[1])))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        try:
            while chunk := source.recv(self._CHUNK):
                self._pace(len(chunk), answers)
                target.sendall(chunk)
                with self._lock:
                    if answers:
                        self.served += len(chunk)
                    else:
                        self.received += len(chunk)
        except OSError:
            pass  # one side went away (a killed client): end both
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
            source.close()

    def _pace(self, count: int, answers: bool) -> None:
        """Wait for this chunk's turn: ``rate`` bytes a second over every connection together, in
        each direction."""
        rate = self.rate
        if rate is None:
            return
        with self._lock:
            now = time.monotonic()
            turn = max(now, self._next_send[answers])
            self._next_send[answers] = turn + count / rate
        if turn > now:
            time.sleep(turn - now)
