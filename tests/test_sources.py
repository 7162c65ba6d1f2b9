"""Sources: a job's blob comes from the first of its sources that has it, whatever their kind.

The folder source (a folder laid out like the store, ``file://``) plugs into the same downloader
as the Hub and plain URLs: these tests build jobs with it and change nothing else. The mirror's
request log witnesses what went over the network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx2
import pytest
from helpers import since_settled, write_manifest

from alex_models import api
from alex_models._retry import RetryPolicy
from alex_models._units import MiB
from alex_models.api._materialize import download_jobs, download_missing, gguf_checks, link_views, with_token
from alex_models.download import Downloader, DownloadOptions, FileJob, NoProgress
from alex_models.errors import IntegrityError, RemoteError
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.sources import FolderSource, HubSource, Source, UrlSource
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_gguf

REPO = "org/model"
DATA = hashlib.shake_256(b"sources").digest(3 * MiB + 12_345)
SHA = hashlib.sha256(DATA).hexdigest()
PIECES = DownloadOptions(min_segment=MiB, connections=2)


def folder_with(root: Path, data: bytes, sha256: str = SHA) -> FolderSource:
    """A folder laid out like the store, holding ``data`` under ``sha256``."""
    path = Store(root).blob_path(sha256)
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return FolderSource(root)


def job(*sources: Source, data: bytes = DATA) -> FileJob:
    return FileJob(hashlib.sha256(data).hexdigest(), len(data), sources, "org/model/model.gguf")


def test_a_locked_project_syncs_from_a_store_folder_and_asks_the_mirror_nothing(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    files = {
        f"{name}-Q4_K_M.gguf": write_tiny_gguf(tmp_path / f"{name}.gguf", context_length=n).read_bytes()
        for n, name in enumerate(("chat", "embed"), start=1000)
    }
    mirror_root.commit(REPO, files)
    manifest = write_manifest(
        project, {name: {"repo": REPO, "file": f"{name}-Q4_K_M.gguf"} for name in ("chat", "embed")}
    )
    team = tmp_path / "team-store"
    api.sync(manifest, store_home=team)  # the team's store: the folder the host syncs from
    since_settled(mirror)
    mirror.clear_log()

    # sync's own steps, with the team's store asked before the Hub: the downloader is unchanged.
    lock = api.read_lock(project / "models.lock")
    assert lock is not None
    names = sorted(lock.models)
    host = Store(tmp_path / "host-store").init()
    jobs = with_token(
        list(download_jobs(lock, names, mirror.url, remotes=(FolderSource(team),)).values()), mirror.url, ""
    )
    fetched = download_missing(
        host, jobs, NoProgress(), jobs=4, client=None, options=None, checks=gguf_checks(lock, names)
    )
    for name in names:
        link_views(host, name, lock.models[name])

    assert fetched == {hashlib.sha256(data).hexdigest() for data in files.values()}
    assert since_settled(mirror) == [], "nothing came from the mirror"
    # A sync that may not touch the network finds every locked file there, verified, with its view.
    result = api.sync(manifest, api.SyncOptions(frozen=True, offline=True), store_home=host.home)
    assert result.downloaded == ()
    verified = api.verify(manifest, store_home=host.home)
    assert (verified.checked, verified.corrupt, verified.missing) == (2, (), ())
    for model in result.models:
        assert model.main is not None
        assert model.main.read_bytes() == files[model.main.name]


def test_the_first_source_with_the_blob_serves_it_and_those_without_pass_it_on(
    mirror_root: MirrorRoot, mirror: MirrorServer, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    commit = mirror_root.commit(REPO, {"model.gguf": DATA})
    (tmp_path / "empty").mkdir()
    absent = f"{mirror.url}/{REPO}/resolve/{commit}/absent.gguf"
    sources = (
        FolderSource(tmp_path / "empty"),  # no such file
        UrlSource(absent),  # 404
        folder_with(tmp_path / "has", DATA),
        HubSource(mirror.url, REPO, commit, "model.gguf"),  # has it too, but comes later
    )

    assert Downloader(store, client, options=PIECES).fetch(job(*sources)) is True

    assert store.blob_path(SHA).read_bytes() == DATA
    assert [(r.path, r.status) for r in since_settled(mirror)] == [(absent.removeprefix(mirror.url), 404)]


def test_when_no_source_has_the_blob_the_error_names_each(
    mirror_root: MirrorRoot, mirror: MirrorServer, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    commit = mirror_root.commit(REPO, {"other.gguf": b"other"})
    (tmp_path / "empty").mkdir()
    sources = (FolderSource(tmp_path / "empty"), HubSource(mirror.url, REPO, commit, "model.gguf"))

    with pytest.raises(RemoteError) as caught:
        Downloader(store, client).fetch(job(*sources))

    assert caught.value.exit_code == 4
    message = caught.value.message
    assert message.startswith("org/model/model.gguf: no source has it: ")
    assert f"{(tmp_path / 'empty').as_uri()} has no blobs/sha256/{SHA[:2]}/{SHA}" in message
    assert f"{mirror.url}/{REPO}/resolve/{commit}/model.gguf answered 404" in message
    assert not store.blob_path(SHA).exists()


@pytest.mark.parametrize(
    ("copy", "error"),
    [
        (bytes([DATA[0] ^ 0xFF]) + DATA[1:], f"downloaded bytes have SHA256 .*, the lock says {SHA}"),
        (DATA[:-1], f"holds {len(DATA) - 1} bytes, the lock pins {len(DATA)}"),
    ],
    ids=["corrupt", "truncated"],
)
def test_bytes_from_a_folder_are_verified_like_any_others(
    store: Store, client: httpx2.Client, tmp_path: Path, copy: bytes, error: str
) -> None:
    source = folder_with(tmp_path / "damaged", copy)

    with pytest.raises(IntegrityError, match=error):
        Downloader(store, client, options=PIECES).fetch(job(source))

    assert not store.blob_path(SHA).exists()
    assert not store.progress_path(SHA).exists(), "nothing recorded to resume from"


@pytest.mark.parametrize(
    ("copy", "problem"),
    [
        (
            bytes([DATA[0] ^ 0xFF]) + DATA[1:],
            f"sent bytes with SHA256 {hashlib.sha256(bytes([DATA[0] ^ 0xFF]) + DATA[1:]).hexdigest()}, not {SHA}",
        ),
        (DATA[:-1], f"holds {len(DATA) - 1} bytes, the lock pins {len(DATA)}"),
    ],
    ids=["corrupt", "truncated"],
)
def test_a_folder_with_wrong_bytes_is_named_in_a_warning_and_the_next_source_serves_the_blob(
    store: Store, client: httpx2.Client, tmp_path: Path, copy: bytes, problem: str
) -> None:
    bad = folder_with(tmp_path / "damaged", copy)
    good = folder_with(tmp_path / "good", DATA)
    warnings: list[str] = []

    assert Downloader(store, client, options=PIECES, warn=warnings.append).fetch(job(bad, good)) is True

    assert store.blob_path(SHA).read_bytes() == DATA
    [warning] = warnings
    assert warning.startswith(f"org/model/model.gguf: {bad.name}: ")
    assert problem in warning
    assert warning.endswith(f"; nothing stored, trying {good.name}")


def test_wrong_bytes_in_one_source_and_none_in_the_rest_is_an_integrity_error_naming_each(
    store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    bad = folder_with(tmp_path / "damaged", DATA[:-1])
    (tmp_path / "empty").mkdir()
    empty = FolderSource(tmp_path / "empty")

    with pytest.raises(IntegrityError) as caught:
        Downloader(store, client, options=PIECES).fetch(job(bad, empty))

    assert caught.value.exit_code == 3
    assert caught.value.message.startswith("org/model/model.gguf: no source has the locked bytes (")
    assert f"{bad.name}: " in caught.value.message
    assert f"{empty.name} has no blobs/sha256/" in caught.value.message
    assert not store.blob_path(SHA).exists()
    assert not store.partial_path(SHA).exists()


def test_a_fetch_cut_short_on_the_hub_resumes_from_a_folder(
    mirror_root: MirrorRoot, mirror: MirrorServer, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    commit = mirror_root.commit(REPO, {"model.gguf": DATA})
    mirror.faults.add("drop-after=2MB,times=1,on=cdn")
    hub = HubSource(mirror.url, REPO, commit, "model.gguf")
    once = DownloadOptions(retry=RetryPolicy(attempts=1, base=0.01))
    with pytest.raises(RemoteError, match="gave up on"):
        Downloader(store, client, options=once).fetch(job(hub))
    resumed: list[int] = []

    class Started(NoProgress):
        def started(self, job: FileJob, already: int) -> None:
            resumed.append(already)

    assert (
        Downloader(store, client, progress=Started()).fetch(job(folder_with(tmp_path / "has", DATA))) is True
    )

    assert resumed == [2_000_000], "the folder is asked only for what the Hub did not send"
    assert store.blob_path(SHA).read_bytes() == DATA


def test_the_token_goes_to_hub_sources_at_the_endpoint_only(tmp_path: Path) -> None:
    endpoint = "https://hub.example"
    at_endpoint = HubSource(endpoint, REPO, "c" * 40, "model.gguf")
    elsewhere = HubSource("https://other.example", REPO, "c" * 40, "model.gguf")
    plain = UrlSource(f"{endpoint}/{REPO}/resolve/main/model.gguf")
    folder = FolderSource(tmp_path)

    [given] = with_token([job(folder, at_endpoint, elsewhere, plain)], endpoint, "hf_x")

    assert given.sources == (
        folder,
        HubSource(endpoint, REPO, "c" * 40, "model.gguf", "hf_x"),
        elsewhere,
        plain,
    )
    assert "hf_x" not in repr(given), "a token never shows in a repr"
