"""The object-store remote (``s3://bucket/prefix``) against moto's S3 server on loopback.

Objects stay small here: moto holds them in memory. ``test_remote_objects_rclone`` runs the
disk-backed ``rclone serve s3``.
"""

from __future__ import annotations

import contextlib
import hashlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx2
import obstore
import pytest
from gatewaykit import Gateway
from helpers import free_port
from hypothesis import given
from hypothesis import strategies as st
from s3kit import (
    DATA,
    SECRET,
    SHA,
    Recorded,
    blob_file,
    job,
    keep_versions,
    stored,
    upload,
    use_endpoint,
    versions,
)

from alex_models._units import MiB
from alex_models.download import Downloader, DownloadOptions
from alex_models.errors import IntegrityError, RemoteError, UsageError
from alex_models.remotes import open_remote
from alex_models.remotes.objects import MAX_PARTS, PART_SIZE, ObjectStoreRemote, part_size_for
from alex_models.sources import FolderSource, Missing, Transient, Wire
from alex_models.sources.objects import ObjectStoreSource
from alex_models.store import Store, blob_key

PIECES = DownloadOptions(min_segment=512 * 1024, connections=4)


@pytest.fixture
def remote(bucket: str) -> Iterator[ObjectStoreRemote]:
    opened = open_remote(f"s3://{bucket}/team")
    assert isinstance(opened, ObjectStoreRemote)
    yield opened
    opened.close()


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


def test_a_damaged_object_under_the_blob_s_name_is_reported_not_replaced(
    remote: ObjectStoreRemote, tmp_path: Path
) -> None:
    obstore.put(remote.store, blob_key(SHA), DATA[:100])

    with pytest.raises(IntegrityError) as caught:
        remote.upload(SHA, len(DATA), blob_file(tmp_path, DATA), lambda n: None)

    assert caught.value.exit_code == 3
    assert caught.value.message == f"{remote.url}/{blob_key(SHA)} holds 100 bytes, the blob has {len(DATA)}"
    assert stored(remote, blob_key(SHA)) == DATA[:100]


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


def racing(remote: ObjectStoreRemote, data: bytes, path: Path, hold: Callable[[int], None]) -> Future[bool]:
    """Another host's upload of ``data`` (the remote opened again: a host's own), in a thread of its
    own, ``hold(bytes sent so far)`` called after each part is handed over (it may wait there, as a
    slower host would)."""
    remote = ObjectStoreRemote.from_url(remote.url, part_size=remote.part_size)
    sent = [0]

    def advanced(count: int) -> None:
        sent[0] += count
        hold(sent[0])

    return ThreadPoolExecutor(1).submit(
        remote.upload, hashlib.sha256(data).hexdigest(), len(data), path, advanced
    )


def test_a_host_that_finds_the_blob_completed_before_its_last_part_aborts_its_upload(
    bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    keep_versions(moto_endpoint, bucket)
    remote = ObjectStoreRemote.from_url(f"s3://{bucket}/team", part_size=5 * MiB)
    data = hashlib.shake_256(b"race").digest(11 * MiB)
    key = blob_key(hashlib.sha256(data).hexdigest())
    path = blob_file(tmp_path, data)
    first_done = threading.Event()

    def hold(sent: int) -> None:
        first_done.wait(30)  # held after its first part until the other host is done

    slower = racing(remote, data, path, hold)

    assert upload(remote, data, path) == (True, len(data))
    first_done.set()

    assert slower.result(timeout=30) is False, "it saw the object before its last part and gave up"
    assert versions(moto_endpoint, bucket, f"team/{key}") == [data], "written once, never replaced"
    uploads = httpx2.get(f"{moto_endpoint}/{bucket}?uploads", trust_env=False).text
    assert "<Upload>" not in uploads, "the slower host's upload was aborted, its parts gone"


def test_two_hosts_past_their_last_check_both_complete_with_the_same_bytes(
    bucket: str, moto_endpoint: str, tmp_path: Path
) -> None:
    """The race obstore leaves open (no If-None-Match on a multipart completion): each version is
    the whole blob, so no reader ever sees other bytes under its name."""
    keep_versions(moto_endpoint, bucket)
    remote = ObjectStoreRemote.from_url(f"s3://{bucket}/team", part_size=5 * MiB)
    data = hashlib.shake_256(b"tie").digest(11 * MiB)
    path = blob_file(tmp_path, data)
    both_checked = threading.Barrier(2, timeout=30)

    def hold(sent: int) -> None:
        if sent == len(data):  # its last part handed over, after its last HEAD: wait for the other
            both_checked.wait()

    hosts = [racing(remote, data, path, hold) for _ in range(2)]

    assert [host.result(timeout=30) for host in hosts] == [True, True]
    assert versions(moto_endpoint, bucket, f"team/{blob_key(hashlib.sha256(data).hexdigest())}") == [
        data,
        data,
    ]


UPLOADER = """
import sys
from pathlib import Path

from alex_models.remotes.objects import MAX_PARTS, PART_SIZE, ObjectStoreRemote, part_size_for

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


def test_each_piece_is_a_ranged_get_of_a_signed_url_over_the_downloader_s_connections(
    remote: ObjectStoreRemote,
    moto_endpoint: str,
    store: Store,
    client: httpx2.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What reached the server (a gateway in front of moto logs it): one HEAD, then a GET per piece,
    each with its own Range, answered 206, signed in its query (no Authorization header)."""
    remote.upload(SHA, len(DATA), blob_file(tmp_path, DATA), lambda n: None)
    with Gateway(moto_endpoint.removeprefix("http://"), signed=True) as gateway:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{gateway.host}")
        through = ObjectStoreRemote.from_url(remote.url)

        assert Downloader(store, client, options=PIECES).fetch(job(through.source())) is True

    assert store.blob_path(SHA).read_bytes() == DATA
    assert len(gateway.seen("api", "HEAD", SHA)) == 1
    gets = gateway.seen("api", "GET", SHA)
    assert len(gets) >= 4, gets
    assert all(g.status == 206 and g.range for g in gets), gets
    assert len({g.range for g in gets}) == len(gets), "each piece asked once"
    assert all(g.authorization is None and "X-Amz-Signature=" in g.path for g in gets)


def test_a_server_that_ignores_range_serves_the_blob_in_one_stream(
    remote: ObjectStoreRemote,
    moto_endpoint: str,
    store: Store,
    client: httpx2.Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 200 as long as the whole object is the whole object: the pieces stop (those already asked
    for too), and the blob is read again in one GET from byte 0."""
    remote.upload(SHA, len(DATA), blob_file(tmp_path, DATA), lambda n: None)
    with Gateway(moto_endpoint.removeprefix("http://"), ignore_range=True, signed=True) as gateway:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{gateway.host}")
        through = ObjectStoreRemote.from_url(remote.url)

        assert Downloader(store, client, options=PIECES).fetch(job(through.source())) is True

    assert store.blob_path(SHA).read_bytes() == DATA
    gets = gateway.seen("api", "GET", SHA)
    assert [g.status for g in gets] == [200] * len(gets)
    assert [g.range is None for g in gets] == [False] * (len(gets) - 1) + [True], "ranges, then one stream"


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


def test_a_get_refused_after_the_head_names_the_object_never_its_signed_query(
    remote: ObjectStoreRemote, bucket: str, moto_endpoint: str, client: httpx2.Client, tmp_path: Path
) -> None:
    """Each GET's URL carries a signature in its query: a message names the object without it."""
    remote.upload(SHA, len(DATA), blob_file(tmp_path, DATA), lambda n: None)
    reader = remote.source().reader(job(), Wire(client, 5.0))
    with reader.open(0, 1024) as body:
        assert b"".join(bytes(piece) for piece in body) == DATA[:1024]

    obstore.put(remote.store, blob_key(SHA), DATA[:100])  # cut short between two pieces
    with pytest.raises(RemoteError) as refused, reader.open(1024, 2048):
        pass
    obstore.delete(remote.store, blob_key(SHA))  # then gone
    with pytest.raises(Missing) as missing, reader.open(1024, 2048):
        pass

    assert (
        refused.value.message == f"{job().label}: {moto_endpoint}/{bucket}/team/{blob_key(SHA)} answered 416"
    )
    assert "X-Amz" not in f"{refused.value.message} {refused.value.hint}"
    assert missing.value.message == f"{remote.url} has no {blob_key(SHA)}", "as the HEAD would say"


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


def test_parts_are_8_mib_until_a_blob_would_need_more_than_10000_of_them() -> None:
    assert part_size_for(5 * 1024**3) == PART_SIZE
    assert part_size_for(PART_SIZE * MAX_PARTS) == PART_SIZE
    assert part_size_for(200 * 10**9) == 20 * MiB  # a 200 GB file


@given(st.integers(min_value=1, max_value=5 * 1024**4))  # S3's largest object: 5 TiB
def test_every_blob_fits_in_10000_whole_mib_parts(size: int) -> None:
    part = part_size_for(size)
    assert part % MiB == 0
    assert part >= PART_SIZE
    assert -(-size // part) <= MAX_PARTS


def test_with_obstore_s_own_network_settings_an_s3_object_is_read_through_obstore(
    remote: ObjectStoreRemote, store: Store, client: httpx2.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy or a CA set for obstore (AWS_PROXY_URL, AWS_ALLOW_INVALID_CERTIFICATES…) is one the
    downloader's HTTP client does not have: the HEAD would pass and every GET fail or go direct."""
    monkeypatch.setenv("AWS_ALLOW_INVALID_CERTIFICATES", "true")
    source = remote.source()
    blob = job(source)

    assert type(source.reader(blob, Wire(client, 5.0, None))).__name__ == "ObjectStoreReader"
    monkeypatch.delenv("AWS_ALLOW_INVALID_CERTIFICATES")
    assert type(source.reader(blob, Wire(client, 5.0, None))).__name__ == "SignedReader"
