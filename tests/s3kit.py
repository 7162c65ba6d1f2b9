"""Real S3 servers for the object-store remote's tests, and what those tests share.

moto's server runs in the test process (objects in memory: keep them small); ``rclone serve s3``
is a separate, disk-backed process. Credentials and the endpoint reach obstore through the
standard AWS variables, as they would on a host.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import obstore
import pytest
from helpers import console_script, free_port, wait_for

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


def job(*sources: Source, data: bytes = DATA) -> FileJob:
    return FileJob(hashlib.sha256(data).hexdigest(), len(data), sources, "org/model/model.gguf")


@dataclass
class Recorded:
    """A source passed through, the ranges asked of it written down (the object store is real)."""

    inner: Source
    ranges: list[tuple[int, int]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    def reader(self, blob: Blob, wire: Wire) -> Reader:
        inner = self.inner.reader(blob, wire)
        ranges = self.ranges

        class Recording:
            def open(self, start: int, end: int) -> AbstractContextManager[Body]:
                ranges.append((start, end))
                return inner.open(start, end)

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
