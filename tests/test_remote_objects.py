"""The object-store remote (``s3://bucket/prefix``) against a real S3 server on loopback.

moto's server runs in this process (objects in memory, so they stay small here); ``rclone serve
s3`` (disk-backed, a separate process) serves the slow test. Credentials and the endpoint reach
obstore through the standard AWS variables, as they would on a host.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import obstore
import pytest
from helpers import free_port, wait_for
from moto.server import ThreadedMotoServer

from alex_models._retry import RetryPolicy
from alex_models._units import MiB
from alex_models.download import Downloader, DownloadOptions, FileJob, NoProgress
from alex_models.errors import IntegrityError, RemoteError, UsageError, UserError
from alex_models.remotes.base import blob_key, open_remote
from alex_models.remotes.objects import ObjectStoreRemote
from alex_models.sources import Blob, Body, FolderSource, Missing, Reader, Source, Transient, Wire
from alex_models.sources.objects import ObjectStoreSource
from alex_models.store import Store

SECRET = "s3cr3t-never-shown"
DATA = hashlib.shake_256(b"objects").digest(3 * MiB + 4321)
SHA = hashlib.sha256(DATA).hexdigest()
PIECES = DownloadOptions(min_segment=512 * 1024, connections=4)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, for this module's tests (each uses its own bucket)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str, key: str, secret: str) -> None:
    """What a host's environment says: the keys, the endpoint, the region."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty bucket on moto, the environment pointed at it."""
    use_endpoint(monkeypatch, moto_endpoint, "AKIDEXAMPLE", SECRET)
    name = f"models-{uuid.uuid4().hex[:12]}"
    httpx2.put(f"{moto_endpoint}/{name}", trust_env=False).raise_for_status()
    return name


@pytest.fixture
def remote(bucket: str) -> Iterator[ObjectStoreRemote]:
    opened = open_remote(f"s3://{bucket}/team")
    assert isinstance(opened, ObjectStoreRemote)
    yield opened
    opened.close()


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


def test_uploaded_blobs_are_listed_with_their_sizes(remote: ObjectStoreRemote, tmp_path: Path) -> None:
    small = b"a small file"
    assert upload(remote, small, blob_file(tmp_path, small, "small")) == (True, len(small))
    assert upload(remote, DATA, blob_file(tmp_path, DATA)) == (True, len(DATA))
    absent = hashlib.sha256(b"never pushed").hexdigest()

    assert remote.sizes([SHA, hashlib.sha256(small).hexdigest(), absent]) == {
        SHA: len(DATA),
        hashlib.sha256(small).hexdigest(): len(small),
    }
    assert stored(remote, blob_key(SHA)) == DATA, "laid out like the store, below the prefix"


def test_a_blob_already_there_is_not_uploaded_again_nor_replaced(
    remote: ObjectStoreRemote, tmp_path: Path
) -> None:
    assert upload(remote, DATA, blob_file(tmp_path, DATA)) == (True, len(DATA))
    other = blob_file(tmp_path, bytes(len(DATA)), "other")  # other bytes, under the same name

    assert remote.upload(SHA, len(DATA), other, lambda n: pytest.fail("nothing is sent")) is False

    assert stored(remote, blob_key(SHA)) == DATA


def test_a_published_lock_is_written_and_replaced_whole(remote: ObjectStoreRemote) -> None:
    remote.write("locks/models.lock", b"version: 1\n")
    remote.write("locks/models.lock", b"version: 2\n")

    assert stored(remote, "locks/models.lock") == b"version: 2\n"


def test_a_large_blob_goes_up_in_parts_and_appears_whole(bucket: str, tmp_path: Path) -> None:
    remote = ObjectStoreRemote.from_url(f"s3://{bucket}/team", part_size=5 * MiB, concurrency=2)
    data = hashlib.shake_256(b"parts").digest(11 * MiB + 7)

    assert upload(remote, data, blob_file(tmp_path, data)) == (True, len(data))

    key = blob_key(hashlib.sha256(data).hexdigest())
    assert stored(remote, key) == data
    assert str(obstore.head(remote.store, key)["e_tag"]).strip('"').endswith("-3"), "three parts"


UPLOADER = """
import sys
from pathlib import Path

from alex_models.remotes.objects import ObjectStoreRemote

def advanced(sent: int) -> None:
    print(sent, flush=True)
    sys.stdin.readline()  # holds the upload here, mid-way, until the test kills this process

url, sha256, size, path = sys.argv[1:]
ObjectStoreRemote.from_url(url, part_size=5 * 1024 * 1024).upload(sha256, int(size), Path(path), advanced)
"""


def test_an_upload_killed_midway_leaves_no_object_and_a_rerun_uploads_it(bucket: str, tmp_path: Path) -> None:
    remote = ObjectStoreRemote.from_url(f"s3://{bucket}/team", part_size=5 * MiB)
    data = hashlib.shake_256(b"killed").digest(11 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    path = blob_file(tmp_path, data)
    uploader = subprocess.Popen(
        [sys.executable, "-c", UPLOADER, remote.url, sha, str(len(data)), str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert uploader.stdout is not None
    assert int(uploader.stdout.readline()) == 5 * MiB, "the first part is on its way"
    uploader.kill()
    uploader.wait()

    assert remote.sizes([sha]) == {}, "no half object under the blob's name"
    assert upload(remote, data, path) == (True, len(data))
    assert stored(remote, blob_key(sha)) == data


def test_sync_reads_a_blob_from_the_bucket_in_pieces(
    remote: ObjectStoreRemote, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    remote.upload(SHA, len(DATA), blob_file(tmp_path, DATA), lambda n: None)
    source = Recorded(remote.source())

    assert Downloader(store, client, options=PIECES).fetch(job(source)) is True

    assert store.blob_path(SHA).read_bytes() == DATA
    assert len(source.ranges) >= 4, source.ranges
    assert sorted(source.ranges)[0][0] == 0
    assert sorted(source.ranges)[-1][1] == len(DATA)


def test_a_blob_the_bucket_lacks_is_missing_and_the_next_source_serves_it(
    remote: ObjectStoreRemote, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    source = remote.source()
    with pytest.raises(Missing) as missing, source.reader(job(), Wire(client, 5.0)).open(0, len(DATA)):
        pass
    assert missing.value.message == f"{remote.url} has no {blob_key(SHA)}"

    folder = Store(tmp_path / "folder")
    folder.blob_path(SHA).parent.mkdir(parents=True)
    folder.blob_path(SHA).write_bytes(DATA)

    assert Downloader(store, client, options=PIECES).fetch(job(source, FolderSource(folder.home))) is True
    assert store.blob_path(SHA).read_bytes() == DATA


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (DATA[:-10], f"holds {len(DATA) - 10} bytes, the lock pins {len(DATA)}"),
        (bytes(len(DATA)), "SHA256"),
    ],
    ids=["truncated", "other-bytes"],
)
def test_a_wrong_object_in_the_bucket_is_never_stored(
    remote: ObjectStoreRemote, store: Store, client: httpx2.Client, bad: bytes, error: str
) -> None:
    obstore.put(remote.store, blob_key(SHA), bad)  # edited in the bucket behind the tool's back

    with pytest.raises(IntegrityError, match=error) as caught:
        Downloader(store, client, options=PIECES).fetch(job(remote.source()))

    assert caught.value.exit_code == 3
    assert not store.blob_path(SHA).exists()


def test_a_bucket_that_does_not_exist_is_one_network_error_naming_the_remote(
    bucket: str, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    remote = ObjectStoreRemote.from_url(f"s3://{bucket}-absent/team")

    for attempt in (
        lambda: remote.sizes([SHA]),
        lambda: remote.upload(SHA, len(DATA), blob_file(tmp_path, DATA), lambda n: None),
        lambda: Downloader(store, client, options=PIECES).fetch(job(remote.source())),
    ):
        with pytest.raises(RemoteError) as caught:
            attempt()
        assert caught.value.exit_code == 4
        assert caught.value.message == f"s3://{bucket}-absent/team: the bucket does not exist"
    assert not store.blob_path(SHA).exists()


@contextlib.contextmanager
def authenticated(endpoint: str) -> Iterator[None]:
    """moto checks every request's key from now on (it knows none of ours), as AWS would."""
    httpx2.post(f"{endpoint}/moto-api/reset-auth", content=b"0", trust_env=False).raise_for_status()
    try:
        yield
    finally:
        httpx2.post(f"{endpoint}/moto-api/reset-auth", content=b"inf", trust_env=False).raise_for_status()


def test_wrong_credentials_are_one_network_error_naming_the_remote_and_no_secret(
    remote: ObjectStoreRemote, moto_endpoint: str, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    with authenticated(moto_endpoint):
        for attempt in (
            lambda: remote.sizes([SHA]),
            lambda: remote.upload(SHA, len(DATA), blob_file(tmp_path, DATA), lambda n: None),
            lambda: Downloader(store, client, options=PIECES).fetch(job(remote.source())),
        ):
            with pytest.raises(RemoteError) as caught:
                attempt()
            assert caught.value.exit_code == 4
            assert caught.value.message == f"{remote.url}: access denied"
            assert SECRET not in f"{caught.value.message} {caught.value.hint}"
            assert "AWS_SECRET_ACCESS_KEY" in str(caught.value.hint)


def test_an_endpoint_that_does_not_answer_is_retried_by_sync_and_ends_a_remote_call(
    monkeypatch: pytest.MonkeyPatch, client: httpx2.Client
) -> None:
    use_endpoint(monkeypatch, f"http://127.0.0.1:{free_port()}", "AKIDEXAMPLE", SECRET)
    remote = ObjectStoreRemote.from_url("s3://models/team")

    with pytest.raises(Transient), remote.source().reader(job(), Wire(client, 5.0)).open(0, len(DATA)):
        pass  # the downloader's retries take it from there
    with pytest.raises(RemoteError) as caught:
        remote.sizes([SHA])
    assert caught.value.exit_code == 4
    assert caught.value.message.startswith("s3://models/team: ")
    assert SECRET not in f"{caught.value.message} {caught.value.hint}"


@pytest.mark.parametrize("url", ["s3://AKID:secret@models/team", "s3://models/team?secret=1", "s3://"])
def test_a_remote_url_is_a_bucket_and_a_prefix_only(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_remote(url)
    assert "secret" not in caught.value.message


def test_the_source_is_named_by_the_remote_url(remote: ObjectStoreRemote) -> None:
    assert isinstance(remote.source(), ObjectStoreSource)
    assert remote.source().name == remote.url == f"s3://{remote.url.split('/')[2]}/team"


# -- rclone serve s3: disk-backed, and a server that may answer a ranged GET with the whole object


class Rclone:
    """``rclone serve s3`` over a folder (its buckets are the folder's folders), with our keys."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.endpoint = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        rclone = Path(sys.executable).with_name("rclone")
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


@pytest.fixture
def rclone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rclone]:
    server = Rclone(tmp_path / "rclone")
    (server.root / "models").mkdir(parents=True)
    server.start()
    use_endpoint(monkeypatch, server.endpoint, "AKIDEXAMPLE", SECRET)
    try:
        yield server
    finally:
        server.kill()


@pytest.mark.slow
def test_rclone_serves_a_large_blob_through_the_downloader(
    rclone: Rclone, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    remote = ObjectStoreRemote.from_url("s3://models/team", part_size=8 * MiB)
    data = hashlib.shake_256(b"rclone").digest(50 * MiB + 3)
    sha = hashlib.sha256(data).hexdigest()
    assert upload(remote, data, blob_file(tmp_path, data)) == (True, len(data))
    assert remote.sizes([sha]) == {sha: len(data)}
    source = Recorded(remote.source())

    assert Downloader(store, client, options=DownloadOptions(min_segment=8 * MiB)).fetch(
        job(source, data=data)
    )

    assert store.blob_path(sha).read_bytes() == data
    asked = [r for r in source.ranges if r != (0, len(data))]
    assert asked, "asked in pieces first"
    assert source.ranges[-1] == (0, len(data)), "the server answered a range with 200: then one stream"


def test_the_keys_of_the_profile_aws_profile_names_are_used(
    rclone: Rclone, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """rclone checks the keys (moto does not unless told): the profile's are the ones it knows."""
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[team]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = {SECRET}\n")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "team")

    assert ObjectStoreRemote.from_url("s3://models/team").sizes([SHA]) == {}

    monkeypatch.setenv("AWS_PROFILE", "other")
    with pytest.raises(UserError) as caught:
        ObjectStoreRemote.from_url("s3://models/team")
    assert (
        caught.value.message
        == f"s3://models/team: AWS_PROFILE=other, but {credentials} holds no keys for that profile"
    )


@pytest.mark.slow
def test_a_server_gone_mid_object_is_a_network_error_and_a_rerun_completes_the_blob(
    rclone: Rclone, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    remote = ObjectStoreRemote.from_url("s3://models/team")
    data = hashlib.shake_256(b"dropped").digest(48 * MiB)
    remote.upload(hashlib.sha256(data).hexdigest(), len(data), blob_file(tmp_path, data), lambda n: None)

    class KillsTheServer(NoProgress):
        def advanced(self, job: FileJob, received: int) -> None:
            rclone.kill()  # with the first bytes written: the rest of the object never comes

    once = DownloadOptions(retry=RetryPolicy(attempts=1, base=0.01))
    with pytest.raises(RemoteError, match="gave up on s3://models/team") as caught:
        Downloader(store, client, progress=KillsTheServer(), options=once).fetch(
            job(remote.source(), data=data)
        )
    assert caught.value.exit_code == 4
    assert not store.blob_path(hashlib.sha256(data).hexdigest()).exists()

    rclone.start()
    assert Downloader(store, client).fetch(job(remote.source(), data=data)) is True
    assert store.blob_path(hashlib.sha256(data).hexdigest()).read_bytes() == data
