"""``mirror serve --store``: the locks of a real store (synced from the fixture mirror) as the
catalogue, the store's blobs as the bytes, seen through the real ``huggingface_hub`` client and
``alex-models lock``, with client tokens, ``/health`` and ``/metrics``."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from helpers import cli, home, sha256, since_settled, write_manifest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from storekit import GGUF, LOCKED, MODELS, REPO, Synced, sync_project

from alex_models import api
from alex_models.lock import loads
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.mirror.store_catalogue import StoreCatalogue
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_gguf

TOKEN = "client-token-1"


@pytest.fixture
def synced(mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path) -> Synced:
    """A store of this test's own (ALEX_MODELS_HOME), for the tests that change it."""
    return sync_project(mirror_root, mirror.url, tmp_path, home())


@pytest.fixture
def served(synced_store: Synced) -> Iterator[MirrorServer]:
    """The store mirror over the store's registered locks: no token asked."""
    with MirrorServer(StoreCatalogue(Store(synced_store.home))) as server:
        yield server


@pytest.fixture
def own(synced: Synced) -> Iterator[MirrorServer]:
    """The store mirror over this test's own store."""
    with MirrorServer(StoreCatalogue(Store(synced.home))) as server:
        yield server


@pytest.fixture
def guarded(synced_store: Synced) -> Iterator[MirrorServer]:
    """The store mirror with client tokens."""
    with MirrorServer(StoreCatalogue(Store(synced_store.home), tokens=frozenset({TOKEN}))) as server:
        yield server


def hub(server: MirrorServer, token: str | bool = False) -> HfApi:
    return HfApi(endpoint=server.url, token=token)


# -- the catalogue ----------------------------------------------------------------------------------


def test_model_info_answers_main_with_the_locked_commit_and_lists_only_locked_files(
    served: MirrorServer, synced_store: Synced
) -> None:
    for revision in ("main", synced_store.commit):
        info = hub(served).model_info(REPO, revision=revision, files_metadata=True)
        assert info.sha == synced_store.commit
        siblings = {s.rfilename: s for s in info.siblings or []}
        assert set(siblings) == set(LOCKED)  # the unlocked Q8_0 file is not there
        for path in LOCKED:
            lfs = siblings[path].lfs
            assert lfs is not None
            assert (lfs.sha256, lfs.size) == (sha256(synced_store.files[path]), len(synced_store.files[path]))


def test_tree_and_paths_info_list_locked_files_and_their_folders(
    served: MirrorServer, synced_store: Synced
) -> None:
    entries = {e.path: e for e in hub(served).list_repo_tree(REPO, recursive=True, revision="main")}
    assert set(entries) == {*LOCKED, "sub"}
    assert isinstance(entries["sub"], RepoFolder)
    infos = hub(served).get_paths_info(REPO, ["config.json", "chat-Q8_0.gguf", "sub"], revision="main")
    by_path = {e.path: e for e in infos}
    assert set(by_path) == {"config.json", "sub"}
    config = by_path["config.json"]
    assert isinstance(config, RepoFile)
    assert config.lfs is not None
    assert config.lfs.sha256 == sha256(synced_store.files["config.json"])


def test_hf_hub_download_and_snapshot_download_get_the_store_bytes(
    served: MirrorServer, synced_store: Synced, tmp_path: Path
) -> None:
    cache = tmp_path / "hf-cache"
    path = Path(hf_hub_download(REPO, GGUF, cache_dir=cache, endpoint=served.url, token=False))
    assert path.read_bytes() == synced_store.files[GGUF]
    assert path.resolve().name == sha256(synced_store.files[GGUF])  # the client's blob is named by the etag
    folder = Path(snapshot_download(REPO, cache_dir=tmp_path / "snap", endpoint=served.url, token=False))
    got = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert got == {path: synced_store.files[path] for path in LOCKED}
    log = since_settled(served)
    assert {r.cache for r in log if r.origin == "cdn"} == {"hit"}


def test_resolve_head_redirects_with_linked_etag_and_size_and_the_cdn_serves_ranges(
    served: MirrorServer, synced_store: Synced
) -> None:
    data = synced_store.files[GGUF]
    head = httpx2.head(f"{served.url}/{REPO}/resolve/main/{GGUF}", trust_env=False)
    assert head.status_code == 302
    assert head.headers["X-Repo-Commit"] == synced_store.commit
    assert head.headers["X-Linked-Etag"] == f'"{sha256(data)}"'
    assert head.headers["X-Linked-Size"] == str(len(data))
    part = httpx2.get(head.headers["Location"], headers={"Range": "bytes=10-19"}, trust_env=False)
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"


def test_unknown_repo_revision_and_file_get_the_hubs_errors(
    served: MirrorServer, synced_store: Synced, tmp_path: Path
) -> None:
    def download(repo: str, file: str, revision: str | None = None) -> None:
        hf_hub_download(repo, file, revision=revision, cache_dir=tmp_path, endpoint=served.url, token=False)

    with pytest.raises(RepositoryNotFoundError):
        download("org/other", GGUF)
    with pytest.raises(RevisionNotFoundError):
        download(REPO, GGUF, "v9")
    with pytest.raises(RevisionNotFoundError):  # a commit of the repo that no lock pins
        download(REPO, GGUF, "0" * 40)
    with pytest.raises(RemoteEntryNotFoundError):  # in the repo upstream, but not locked
        download(REPO, "chat-Q8_0.gguf")


@pytest.mark.parametrize(
    "path",
    [
        "/org/chat/resolve/main/../../../../etc/passwd",
        "/org/chat/resolve/main/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/org/chat/resolve/main/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/org/chat/resolve/..%2F..%2F..%2Fetc/passwd",
        "/../../etc/resolve/main/passwd",
        "/api/models/org/chat/tree/main/..%2F..%2F..",
        "cdn:/org/chat/0000000000000000000000000000000000000000/../../../etc/passwd",
        "cdn:/org/chat/0000000000000000000000000000000000000000/..%2F..%2F..%2Fetc%2Fpasswd",
    ],
)
def test_path_traversal_finds_nothing_outside_the_catalogue(served: MirrorServer, path: str) -> None:
    port = served.cdn_port if path.startswith("cdn:") else served.port
    path = path.removeprefix("cdn:")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)  # sent as written: no client-side normalisation of ".."
    response = connection.getresponse()
    body = response.read()
    connection.close()
    assert response.status in (401, 403, 404)  # the CDN refuses an unsigned path before looking
    assert b"root:" not in body
    assert response.getheader("X-Error-Code") in ("EntryNotFound", "RevisionNotFound", "RepoNotFound", None)


def test_a_locked_file_missing_from_the_store_is_listed_but_answered_entry_not_found(
    own: MirrorServer, synced: Synced, tmp_path: Path
) -> None:
    Store(home()).discard_blob(sha256(synced.files[GGUF]))
    info = hub(own).model_info(REPO, revision="main")
    assert GGUF in {s.rfilename for s in info.siblings or []}
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, GGUF, cache_dir=tmp_path, endpoint=own.url, token=False)
    metrics = httpx2.get(f"{own.url}/metrics", trust_env=False).text
    assert "alex_models_mirror_cache_misses_total 1\n" in metrics


def test_a_lock_synced_while_serving_shows_without_a_restart(
    own: MirrorServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    late = write_tiny_gguf(tmp_path / "late.gguf", context_length=3000).read_bytes()
    commit = mirror_root.commit("org/late", {"late-Q4_K_M.gguf": late})
    with pytest.raises(RepositoryNotFoundError):
        hub(own).model_info("org/late")
    write_manifest(tmp_path / "later", {"late": {"repo": "org/late", "quant": "Q4_K_M"}})
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    api.sync(tmp_path / "later" / "models.yaml")
    assert hub(own).model_info("org/late").sha == commit


# -- alex-models lock against it -------------------------------------------------------------------


@pytest.mark.slow
def test_alex_models_lock_and_lock_check_against_the_store_mirror_give_the_same_lock(
    served: MirrorServer, synced_store: Synced, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", served.url)
    site = tmp_path / "site"
    write_manifest(site, MODELS)
    locked = cli(site, "lock")
    assert locked.returncode == 0, locked.stderr
    assert (site / "models.lock").read_text() == (synced_store.project / "models.lock").read_text()
    checked = cli(site, "lock", "--check")
    assert checked.returncode == 0, checked.stderr
    write_manifest(site, {"q8": {"repo": REPO, "quant": "Q8_0"}})  # upstream has it; no lock does
    refused = cli(site, "lock")
    assert refused.returncode == 1
    assert "has no GGUF with quant label Q8_0" in refused.stderr


# -- access -----------------------------------------------------------------------------------------


def test_with_tokens_anonymous_and_wrong_tokens_get_401_and_a_listed_token_downloads(
    guarded: MirrorServer, synced_store: Synced, tmp_path: Path
) -> None:
    with pytest.raises(RepositoryNotFoundError):  # 401 RepoNotFound, as the Hub answers a private repo
        hub(guarded).model_info(REPO)
    wrong = httpx2.get(f"{guarded.url}/api/models/{REPO}", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": "Invalid credentials in Authorization header"}
    with pytest.raises(HfHubHTTPError):
        hf_hub_download(REPO, GGUF, cache_dir=tmp_path / "a", endpoint=guarded.url, token="nope")
    path = hf_hub_download(REPO, GGUF, cache_dir=tmp_path / "b", endpoint=guarded.url, token=TOKEN)
    assert Path(path).read_bytes() == synced_store.files[GGUF]
    log = since_settled(guarded)
    cdn = [r for r in log if r.origin == "cdn"]
    assert cdn
    assert not any(r.authorization for r in cdn)  # the CDN URL is signed; the token stays on the API


def test_cdn_urls_need_their_signature(guarded: MirrorServer, synced_store: Synced) -> None:
    head = httpx2.head(
        f"{guarded.url}/{REPO}/resolve/main/{GGUF}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    location = head.headers["Location"]
    assert httpx2.get(location).status_code == 200
    assert httpx2.get(location.replace("sig=", "sig=0")).status_code == 403
    assert httpx2.get(location.split("?")[0]).status_code == 403


# -- operations -------------------------------------------------------------------------------------


def test_health_and_metrics_answer_without_a_token_and_count_requests_bytes_and_hits(
    guarded: MirrorServer, synced_store: Synced, tmp_path: Path
) -> None:
    assert httpx2.get(f"{guarded.url}/health").json() == {"status": "ok"}
    hf_hub_download(REPO, GGUF, cache_dir=tmp_path, endpoint=guarded.url, token=TOKEN)
    since_settled(guarded)
    response = httpx2.get(f"{guarded.url}/metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    metrics = dict(
        line.rsplit(" ", 1) for line in response.text.splitlines() if line and not line.startswith("#")
    )
    assert metrics['alex_models_mirror_bytes_served_total{origin="cdn"}'] == str(
        len(synced_store.files[GGUF])
    )
    assert metrics["alex_models_mirror_cache_hits_total"] == "1"
    assert metrics["alex_models_mirror_cache_misses_total"] == "0"
    assert int(metrics['alex_models_mirror_requests_total{origin="cdn",status="200"}']) == 1
    assert int(metrics['alex_models_mirror_requests_total{origin="api",status="302"}']) >= 1
    assert TOKEN not in response.text


def test_two_locks_that_pin_main_differently_name_main_by_the_later_one(
    synced: Synced,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    newer = mirror_root.commit(REPO, {"config.json": b'{"model_type": "qwen"}\n'})
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    write_manifest(tmp_path / "newer", MODELS)
    api.sync(tmp_path / "newer" / "models.yaml")
    warnings: list[str] = []
    old_lock, new_lock = synced.project / "models.lock", tmp_path / "newer" / "models.lock"
    catalogue = StoreCatalogue(Store(home()), [old_lock, new_lock], warn=warnings.append)
    repo = catalogue.repo(REPO)
    assert repo.resolve("main") == newer
    assert repo.resolve(synced.commit) == synced.commit  # the older commit by its id
    assert [w for w in warnings if "main" in w and newer[:12] in w]
    assert loads(new_lock.read_text()).models["chat"].commit == newer
    # Both locks synced into the store: the one written last names main.
    assert StoreCatalogue(Store(home())).repo(REPO).resolve("main") == newer
    old_lock.touch()
    assert StoreCatalogue(Store(home())).repo(REPO).resolve("main") == synced.commit


def test_raw_json_error_for_an_unknown_repo_carries_the_hub_error_code(served: MirrorServer) -> None:
    response = httpx2.get(f"{served.url}/api/models/org/nothing/revision/main")
    assert response.status_code == 401
    assert response.headers["X-Error-Code"] == "RepoNotFound"
    assert json.loads(response.content) == {"error": "Repository not found"}
