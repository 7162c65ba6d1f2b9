"""The object-store remote against ``rclone serve s3``: disk-backed, a separate process, and a
server that answers a ranged GET with the whole object (the downloader then reads one stream).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from s3kit import SECRET, SHA, Rclone, Recorded, blob_file, job, upload, use_endpoint

from alex_models._retry import RetryPolicy
from alex_models._units import MiB
from alex_models.download import Downloader, DownloadOptions, FileJob, NoProgress
from alex_models.errors import RemoteError, UserError
from alex_models.remotes.objects import ObjectStoreRemote
from alex_models.store import Store


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
