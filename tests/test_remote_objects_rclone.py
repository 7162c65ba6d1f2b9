"""The object-store remote against ``rclone serve s3``: disk-backed, a separate process, and a
server that answers a ranged GET with 200 (and the range's bytes, read as that range).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from helpers import cli, sha_file, write_manifest
from s3kit import DATA, SECRET, SHA, Meter, Rclone, Recorded, blob_file, job, upload, use_endpoint

from alex_models._platform import remove_tree
from alex_models._retry import RetryPolicy
from alex_models._units import MiB
from alex_models.download import Downloader, DownloadOptions, FileJob, NoProgress
from alex_models.errors import RemoteError, UserError
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.remotes.objects import ObjectStoreRemote
from alex_models.store import Store, blob_key
from alex_models.tinymodels import write_tiny_gguf


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


def read_through_a_meter(
    rclone: Rclone, data: bytes, store: Store, client: httpx2.Client, tmp_path: Path, piece: int
) -> tuple[Recorded, Meter]:
    """``data`` pushed to rclone, then fetched through a meter in pieces of ``piece`` bytes or
    more: the ranges asked, and what the server sent."""
    remote = ObjectStoreRemote.from_url("s3://models/team", part_size=8 * MiB)
    assert upload(remote, data, blob_file(tmp_path, data)) == (True, len(data))
    with Meter(rclone.endpoint) as meter:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ENDPOINT_URL", meter.url)
            remote = ObjectStoreRemote.from_url("s3://models/team")
        source = Recorded(remote.source())
        options = DownloadOptions(min_segment=piece, connections=4)

        assert Downloader(store, client, options=options).fetch(job(source, data=data)) is True

    assert store.blob_path(hashlib.sha256(data).hexdigest()).read_bytes() == data
    return source, meter


def test_rclone_s_200_to_a_ranged_get_with_the_range_s_bytes_is_read_as_that_range(
    rclone: Rclone, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    """rclone serve s3 answers a ranged GET with 200, the range's bytes and their Content-Range:
    the pieces go on (not the whole object again in one stream), each range sent once."""
    source, meter = read_through_a_meter(rclone, DATA, store, client, tmp_path, piece=512 * 1024)

    assert len(source.ranges) >= 4, source.ranges
    assert (0, len(DATA)) not in source.ranges, "never read again whole"
    assert meter.served < 1.05 * len(DATA), "each byte sent once"


@pytest.mark.slow
def test_rclone_serves_a_blob_of_64_mib_in_parallel_ranges_verified(
    rclone: Rclone, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    data = hashlib.shake_256(b"rclone").digest(64 * MiB + 3)

    source, meter = read_through_a_meter(rclone, data, store, client, tmp_path, piece=8 * MiB)

    assert len(source.ranges) >= 8, source.ranges
    assert (0, len(data)) not in source.ranges, "never read again whole"
    assert source.most_at_once >= 2, "pieces in parallel"
    assert meter.served < 1.01 * len(data), "each byte sent once"


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
    assert "X-Amz-" not in f"{caught.value.message} {caught.value.hint}", "no signed URL"
    assert not store.blob_path(hashlib.sha256(data).hexdigest()).exists()

    rclone.start()
    assert Downloader(store, client).fetch(job(remote.source(), data=data)) is True
    assert store.blob_path(hashlib.sha256(data).hexdigest()).read_bytes() == data


@pytest.mark.slow
def test_a_whole_object_read_for_longer_than_30_s_is_not_cut_and_started_again(
    rclone: Rclone, store: Store, client: httpx2.Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blob smaller than a piece comes in one GET (as from a server that ignores Range); paced
    to take ~34 s, longer than the 30 s obstore allows a whole request by default. Cut there, it
    would start again from byte 0."""
    data = hashlib.shake_256(b"slow-whole").digest(4 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    ObjectStoreRemote.from_url("s3://models/team").upload(
        sha, len(data), blob_file(tmp_path, data), lambda n: None
    )
    with Meter(rclone.endpoint, rate=len(data) / 34) as meter:
        monkeypatch.setenv("AWS_ENDPOINT_URL", meter.url)
        remote = ObjectStoreRemote.from_url("s3://models/team")

        assert Downloader(store, client).fetch(job(remote.source(), data=data)) is True

    assert store.blob_path(sha).read_bytes() == data
    assert meter.served < 1.2 * len(data), "the object was sent once, not again from its start"


@pytest.mark.slow
def test_a_blob_over_1_gib_is_pushed_to_rclone_and_synced_from_it_verified(
    rclone: Rclone,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's large file through the commands: CI syncs it from the Hub and pushes it in
    parts (a HEAD at 1 GiB asks whether another host completed it), a host syncs it from the
    bucket, whose ranged GETs rclone answers with the whole object. About 4 GiB of disk while it
    runs (the file, CI's store, rclone's folder, the host's store), removed at the end."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    big = write_tiny_gguf(tmp_path / "big.gguf", context_length=4096)
    with big.open("ab") as file:  # varied bytes, so a misplaced piece cannot go unnoticed
        for _ in range(16):  # 1 GiB
            file.write(os.urandom(64 * MiB))
        file.write(os.urandom(12345))
    size, digest = big.stat().st_size, sha_file(big)
    assert size > 1024 * MiB
    try:
        mirror_root.commit("org/big", {"big-Q4_K_M.gguf": big})  # hard-linked: no copy
        folder = tmp_path / "ci"
        write_manifest(folder, {"big": {"repo": "org/big", "quant": "Q4_K_M"}})
        remote = "s3://models/team"
        monkeypatch.setenv("ALEX_MODELS_HOME", str(tmp_path / "ci-store"))
        assert cli(folder, "sync", timeout=300).returncode == 0

        pushed = cli(folder, "push", remote, "--json", timeout=300)

        assert pushed.returncode == 0, pushed.stderr
        assert json.loads(pushed.stdout)["bytes"] == size
        in_bucket = rclone.root / "models" / "team" / blob_key(digest)
        assert in_bucket.stat().st_size == size
        assert sha_file(in_bucket) == digest
        remove_tree(tmp_path / "ci-store")  # disk stays bounded: the host's store comes next

        deployed = tmp_path / "host"
        deployed.mkdir()
        (deployed / "models.lock").write_bytes((folder / "models.lock").read_bytes())
        monkeypatch.setenv("ALEX_MODELS_HOME", str(tmp_path / "host-store"))
        synced = cli(deployed, "sync", "--frozen", "--from", remote, "--no-hub", timeout=300)

        assert synced.returncode == 0, synced.stderr
        assert cli(deployed, "verify", timeout=300).returncode == 0, "verify re-hashes it against the lock"
        assert Store(tmp_path / "host-store").blob_path(digest).stat().st_size == size
    finally:
        big.unlink()
        for folder_left in ("mirror-root", "ci-store", "host-store", "rclone"):
            remove_tree(tmp_path / folder_left)
