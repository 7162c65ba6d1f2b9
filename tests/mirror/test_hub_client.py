"""The mirror, seen through the real ``huggingface_hub`` client: it must not tell it from the Hub.

Every test talks to the running mirror with the client's public API (or its ``hf`` CLI) and checks
what a user would get back: resolved commits, sizes and hashes, cache blobs, exceptions, and in
the request log which origin got which request and whether it carried the token.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import cdn_gets, console_script, settled_log, sha256
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord

REPO = "org/model"
FILES: dict[str, bytes] = {
    "config.json": b'{"model_type": "llama", "hidden_size": 64}\n',
    "README.md": b"# A tiny test model\n",
    "model.gguf": os.urandom(200_000),
    "sub/notes.txt": b"notes about the weights\n",
    "sub/deep/weights.safetensors": os.urandom(50_000),
}
LFS_FILES = {"model.gguf", "sub/deep/weights.safetensors"}
FOLDERS = {"sub", "sub/deep"}
NEW_CONFIG = b'{"model_type": "llama", "hidden_size": 128}\n'
FEATURE_FILE = b"only on the feature branch\n"


@dataclass(frozen=True)
class Published:
    """The commits of REPO: ``v1.0`` -> first, ``feature/x`` -> feature, ``main`` -> head."""

    first: str
    feature: str
    head: str

    def files_at(self, commit: str) -> dict[str, bytes]:
        if commit == self.feature:
            return {**FILES, "feature.txt": FEATURE_FILE}
        if commit == self.head:
            return {**FILES, "config.json": NEW_CONFIG}
        return dict(FILES)


@pytest.fixture
def published(mirror_root: MirrorRoot) -> Published:
    first = mirror_root.commit(REPO, FILES, message="first")
    mirror_root.set_tag(REPO, "v1.0", first)
    feature = mirror_root.commit(REPO, {"feature.txt": FEATURE_FILE}, branch="feature/x", parent=first)
    head = mirror_root.commit(REPO, {"config.json": NEW_CONFIG}, message="bigger")
    return Published(first=first, feature=feature, head=head)


# -- helpers ---------------------------------------------------------------------------------------


def api(mirror: MirrorServer, token: str | bool = False) -> HfApi:
    return HfApi(endpoint=mirror.url, token=token)


def download(
    mirror: MirrorServer,
    cache: Path,
    filename: str,
    repo: str = REPO,
    *,
    token: str | bool = False,
    revision: str | None = None,
) -> Path:
    path = hf_hub_download(
        repo, filename, cache_dir=cache, endpoint=mirror.url, token=token, revision=revision
    )
    return Path(path)


def blobs_dir(cache: Path, repo: str = REPO) -> Path:
    return cache / f"models--{repo.replace('/', '--')}" / "blobs"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256(data)}\nsize {len(data)}\n".encode()
    )


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, timeout=30)
    return result.stdout.decode().strip()


def git_oids(work: Path, files: dict[str, bytes]) -> dict[str, str]:
    """The oid real git gives every file and folder of ``files``, with LFS files stored as pointers."""
    work.mkdir()
    git(work, "init", "-q")
    for path, data in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(lfs_pointer(data) if path in LFS_FILES else data)
    git(work, "add", "-A")
    tree = git(work, "write-tree")
    oids = {}
    for line in git(work, "ls-tree", "-r", "-t", tree).splitlines():
        meta, path = line.split("\t")
        oids[path] = meta.split()[2]
    return oids


# -- metadata --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("revision", "commit"),
    [("main", "head"), ("v1.0", "first"), ("feature/x", "feature"), (None, "first")],
    ids=["branch", "tag", "branch-with-slash", "commit-id"],
)
def test_model_info_resolves_branch_tag_slashed_branch_and_commit(
    mirror: MirrorServer, published: Published, revision: str | None, commit: str
) -> None:
    expected = getattr(published, commit)

    info = api(mirror).model_info(REPO, revision=revision or expected)

    assert info.sha == expected
    assert {s.rfilename for s in info.siblings or []} == set(published.files_at(expected))


def test_model_info_files_metadata_gives_sizes_blob_ids_and_lfs_sha256(
    mirror: MirrorServer, published: Published
) -> None:
    info = api(mirror).model_info(REPO, revision="v1.0", files_metadata=True)

    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == set(FILES)
    for path, data in FILES.items():
        sibling = siblings[path]
        assert sibling.size == len(data), path
        if path in LFS_FILES:
            assert sibling.lfs is not None, path
            assert sibling.lfs.sha256 == sha256(data)
            assert sibling.lfs.size == len(data)
            assert sibling.lfs.pointer_size == len(lfs_pointer(data))
        else:
            assert sibling.lfs is None, path
            assert sibling.blob_id == git_blob_id(data)


def test_paths_info_expand_gives_files_folders_and_last_commit(
    mirror: MirrorServer, published: Published
) -> None:
    entries = api(mirror).get_paths_info(
        REPO, ["config.json", "model.gguf", "sub", "no/such/file.txt"], expand=True, revision="v1.0"
    )

    by_path = {e.path: e for e in entries}
    assert set(by_path) == {"config.json", "model.gguf", "sub"}  # missing paths are left out
    config, gguf, folder = by_path["config.json"], by_path["model.gguf"], by_path["sub"]
    assert isinstance(config, RepoFile)
    assert config.size == len(FILES["config.json"])
    assert config.lfs is None
    assert isinstance(gguf, RepoFile)
    assert gguf.size == len(FILES["model.gguf"])
    assert gguf.lfs is not None
    assert gguf.lfs.sha256 == sha256(FILES["model.gguf"])
    assert isinstance(folder, RepoFolder)
    for entry in entries:
        assert entry.last_commit is not None
        assert entry.last_commit.oid == published.first


def test_list_repo_tree_matches_real_git_oids_sizes_and_lfs(
    mirror: MirrorServer, published: Published, tmp_path: Path
) -> None:
    expected_oids = git_oids(tmp_path / "git", FILES)

    entries = list(api(mirror).list_repo_tree(REPO, recursive=True, revision="v1.0"))

    by_path = {e.path: e for e in entries}
    assert len(by_path) == len(entries)
    assert set(by_path) == set(FILES) | FOLDERS
    for path in FOLDERS:
        folder = by_path[path]
        assert isinstance(folder, RepoFolder), path
        assert folder.tree_id == expected_oids[path], path
    for path, data in FILES.items():
        entry = by_path[path]
        assert isinstance(entry, RepoFile), path
        assert entry.size == len(data), path
        assert entry.blob_id == expected_oids[path], path
        if path in LFS_FILES:
            assert entry.lfs is not None, path
            assert entry.lfs.sha256 == sha256(data)
            assert entry.lfs.size == len(data)
        else:
            assert entry.lfs is None, path
        assert entry.xet_hash is None, path  # a xet hash would send the client to a Xet CAS


def test_git_hash_object_agrees_with_small_file_blob_id(
    mirror: MirrorServer, published: Published, tmp_path: Path
) -> None:
    (tmp_path / "README.md").write_bytes(FILES["README.md"])
    expected = git(tmp_path, "hash-object", "README.md")

    [entry] = api(mirror).get_paths_info(REPO, ["README.md"], revision="main")

    assert isinstance(entry, RepoFile)
    assert entry.blob_id == expected


def test_list_repo_tree_follows_pagination_links(mirror_root: MirrorRoot, published: Published) -> None:
    expected = set(FILES) | FOLDERS
    pages = math.ceil(len(expected) / 3)
    with MirrorServer(mirror_root.root, page_size=3) as server:
        entries = list(api(server).list_repo_tree(REPO, recursive=True, revision="main"))
        log = settled_log(
            server, lambda log: sum("/tree/" in r.path for r in log) >= pages, f"{pages} tree pages"
        )

    paths = [e.path for e in entries]
    assert sorted(paths) == sorted(expected)  # everything, each once
    tree_requests = [r for r in log if "/tree/" in r.path]
    assert len(tree_requests) == pages
    assert all(r.status == 200 for r in tree_requests)
    assert [("cursor=" in r.query) for r in tree_requests] == [False] + [True] * (len(tree_requests) - 1)


def test_list_repo_tree_of_a_subfolder(mirror: MirrorServer, published: Published) -> None:
    entries = api(mirror).list_repo_tree(REPO, path_in_repo="sub/deep", revision="main")

    assert [e.path for e in entries] == ["sub/deep/weights.safetensors"]


def test_list_repo_refs(mirror: MirrorServer, published: Published) -> None:
    refs = api(mirror).list_repo_refs(REPO)

    assert {(b.name, b.ref, b.target_commit) for b in refs.branches} == {
        ("main", "refs/heads/main", published.head),
        ("feature/x", "refs/heads/feature/x", published.feature),
    }
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [
        ("v1.0", "refs/tags/v1.0", published.first)
    ]
    assert refs.converts == []


# -- downloads -------------------------------------------------------------------------------------


def test_lfs_download_is_cached_under_its_sha256_and_comes_from_the_cdn(
    mirror: MirrorServer, published: Published, tmp_path: Path
) -> None:
    data = FILES["model.gguf"]
    cache = tmp_path / "cache"

    path = download(mirror, cache, "model.gguf", token=False)

    blob = blobs_dir(cache) / sha256(data)
    assert path.read_bytes() == data
    assert path.resolve() == blob.resolve()
    assert [p.name for p in blobs_dir(cache).iterdir()] == [blob.name]
    assert path == cache / "models--org--model" / "snapshots" / published.head / "model.gguf"
    log = settled_log(mirror, lambda log: len(cdn_gets(log)) >= 1, "the CDN GET")
    [get] = cdn_gets(log)
    assert (get.status, get.bytes_sent) == (200, len(data))
    assert get.path.endswith("/model.gguf")
    assert not any(r.method == "GET" and "/resolve/" in r.path for r in log)  # the bytes came from the CDN


def test_small_file_download_is_cached_under_its_git_blob_id(
    mirror: MirrorServer, published: Published, tmp_path: Path
) -> None:
    data = FILES["sub/notes.txt"]
    cache = tmp_path / "cache"

    path = download(mirror, cache, "sub/notes.txt", token=False)

    blob_id = git_blob_id(data)
    assert path.read_bytes() == data
    assert path.resolve() == (blobs_dir(cache) / blob_id).resolve()
    assert [p.name for p in blobs_dir(cache).iterdir()] == [blob_id]
    assert cdn_gets(mirror.log) == []


def test_token_goes_to_the_api_but_never_to_the_cdn(
    mirror: MirrorServer, mirror_root: MirrorRoot, tmp_path: Path
) -> None:
    mirror_root.create_repo("org/private", private=True, tokens=["hf_test"])
    mirror_root.commit("org/private", {"model.gguf": FILES["model.gguf"]})
    cache = tmp_path / "cache"

    path = download(mirror, cache, "model.gguf", repo="org/private", token="hf_test")

    assert path.read_bytes() == FILES["model.gguf"]
    log = settled_log(mirror, lambda log: len(cdn_gets(log)) >= 1, "the CDN GET")
    api_requests = [r for r in log if r.origin == "api"]
    assert api_requests
    assert all(r.authorization for r in api_requests)
    [get] = cdn_gets(log)
    assert get.status == 200
    assert get.authorization is False


def test_snapshot_download_fetches_only_the_allowed_files(
    mirror: MirrorServer, published: Published, tmp_path: Path
) -> None:
    allowed = {"config.json", "sub/notes.txt", "sub/deep/weights.safetensors"}

    snapshot = Path(
        snapshot_download(
            REPO,
            allow_patterns=["*.json", "sub/*"],
            cache_dir=tmp_path / "cache",
            endpoint=mirror.url,
            token=False,
        )
    )

    assert snapshot.name == published.head
    local = {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()}
    assert local == allowed
    for path in allowed:
        assert (snapshot / path).read_bytes() == published.files_at(published.head)[path]

    def resolved(log: list[RequestRecord]) -> set[str]:
        return {r.path.split(f"/resolve/{published.head}/", 1)[1] for r in log if "/resolve/" in r.path}

    log = settled_log(
        mirror,
        lambda log: resolved(log) >= allowed and len(cdn_gets(log)) >= 1,
        "the resolves and the CDN GET",
    )
    assert resolved(log) == allowed
    assert [r.path.rsplit("/", 1)[1] for r in cdn_gets(log)] == ["weights.safetensors"]


def test_interrupted_download_resumes_with_a_range_request(
    mirror: MirrorServer, mirror_root: MirrorRoot, tmp_path: Path
) -> None:
    data = os.urandom(25_000_000)
    source = tmp_path / "big.gguf"
    source.write_bytes(data)
    mirror_root.commit("org/big", {"big.gguf": source})
    mirror.faults.add("drop-after=15MB,times=1,on=cdn")
    cache = tmp_path / "cache"

    path = download(mirror, cache, "big.gguf", repo="org/big", token=False)

    assert path.read_bytes() == data
    assert [p.name for p in blobs_dir(cache, "org/big").iterdir()] == [sha256(data)]
    log = settled_log(mirror, lambda log: len(cdn_gets(log)) >= 2, "2 CDN GETs")
    first, second = cdn_gets(log)
    assert (first.range, first.status, first.bytes_sent, first.faults) == (
        None,
        200,
        15_000_000,
        ("drop-after",),
    )
    # The client writes 10 MiB chunks, so it resumes after the last whole chunk it kept (§3.3).
    assert (second.range, second.status, second.bytes_sent) == ("bytes=10485760-", 206, len(data) - 10485760)


# -- errors ----------------------------------------------------------------------------------------


@pytest.fixture
def access_repos(mirror_root: MirrorRoot) -> None:
    """``org/private`` (token hf_test), ``org/gated`` (auto, approved token hf_ok), and a public repo
    that lists ``hf_other``, so that token is valid on the server but approved for neither."""
    mirror_root.create_repo("org/private", private=True, tokens=["hf_test"])
    mirror_root.commit("org/private", {"config.json": FILES["config.json"]})
    mirror_root.create_repo("org/gated", gated="auto", tokens=["hf_ok"])
    mirror_root.commit("org/gated", {"model.gguf": FILES["model.gguf"]})
    mirror_root.create_repo("org/other", tokens=["hf_other"])
    mirror_root.commit("org/other", {"config.json": FILES["config.json"]})


@pytest.mark.parametrize(
    ("repo", "token", "status"),
    [("org/nothing", False, 401), ("org/private", False, 401), ("org/private", "hf_other", 404)],
    ids=["unknown-repo", "private-anonymous", "private-foreign-token"],
)
def test_inaccessible_repo_raises_repository_not_found(
    mirror: MirrorServer, access_repos: None, tmp_path: Path, repo: str, token: str | bool, status: int
) -> None:
    with pytest.raises(RepositoryNotFoundError) as from_info:
        api(mirror, token).model_info(repo)
    with pytest.raises(RepositoryNotFoundError) as from_download:
        download(mirror, tmp_path / "cache", "config.json", repo=repo, token=token)

    for exc in (from_info.value, from_download.value):
        assert not isinstance(exc, GatedRepoError)
        assert exc.response is not None
        assert exc.response.status_code == status


def test_private_repo_with_its_token_works(mirror: MirrorServer, access_repos: None, tmp_path: Path) -> None:
    info = api(mirror, "hf_test").model_info("org/private")
    path = download(mirror, tmp_path / "cache", "config.json", repo="org/private", token="hf_test")

    assert info.private is True
    assert path.read_bytes() == FILES["config.json"]


def test_unknown_revision_raises_revision_not_found(
    mirror: MirrorServer, published: Published, tmp_path: Path
) -> None:
    with pytest.raises(RevisionNotFoundError):
        api(mirror).model_info(REPO, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        download(mirror, tmp_path / "cache", "config.json", revision="no-such-branch", token=False)
    with pytest.raises(RevisionNotFoundError):
        list(api(mirror).list_repo_tree(REPO, revision="0" * 40))


def test_missing_file_raises_entry_not_found(
    mirror: MirrorServer, published: Published, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(RemoteEntryNotFoundError) as caught:
        download(mirror, cache, "no/such/file.bin", token=False)

    assert isinstance(caught.value, EntryNotFoundError)
    # The 404 carried X-Repo-Commit, so the client remembers the file as missing at that commit.
    assert (cache / "models--org--model" / ".no_exist" / published.head / "no/such/file.bin").is_file()


def test_gated_repo_download_needs_an_approved_token(
    mirror: MirrorServer, access_repos: None, tmp_path: Path
) -> None:
    with pytest.raises(GatedRepoError) as anonymous:
        download(mirror, tmp_path / "c1", "model.gguf", repo="org/gated", token=False)
    with pytest.raises(GatedRepoError) as unapproved:
        download(mirror, tmp_path / "c2", "model.gguf", repo="org/gated", token="hf_other")
    path = download(mirror, tmp_path / "c3", "model.gguf", repo="org/gated", token="hf_ok")

    assert anonymous.value.response is not None
    assert anonymous.value.response.status_code == 401
    assert unapproved.value.response is not None
    assert unapproved.value.response.status_code == 403
    assert path.read_bytes() == FILES["model.gguf"]


def test_gated_repo_metadata_is_public(mirror: MirrorServer, access_repos: None) -> None:
    info = api(mirror).model_info("org/gated", files_metadata=True)

    assert info.gated == "auto"
    assert [(s.rfilename, s.size) for s in info.siblings or []] == [("model.gguf", len(FILES["model.gguf"]))]


# -- the CLI, configured by the environment --------------------------------------------------------


def test_hf_cli_download_through_hf_endpoint(
    mirror: MirrorServer, published: Published, tmp_path: Path
) -> None:
    hf_home = tmp_path / "hf-home"
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN")
    }
    # No PyPI version check: the test must not depend on (or wait for) the network.
    env |= {"HF_ENDPOINT": mirror.url, "HF_HOME": str(hf_home), "HF_HUB_DISABLE_UPDATE_CHECK": "1"}

    result = subprocess.run(
        [str(console_script("hf")), "download", REPO, "model.gguf", "--quiet"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())  # --quiet: the path alone, for scripts
    assert path.read_bytes() == FILES["model.gguf"]
    assert path.is_relative_to(hf_home / "hub" / "models--org--model" / "snapshots" / published.head)
    log = settled_log(mirror, lambda log: len(cdn_gets(log)) >= 1, "the CDN GET")
    assert [r.path.rsplit("/", 1)[1] for r in cdn_gets(log)] == ["model.gguf"]  # via the CDN
