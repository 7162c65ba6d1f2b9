"""The mirror root: commits, hashes that agree with real git, settings files, and what it refuses."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx2
import pytest

from alex_models.errors import UserError
from alex_models.mirror import DirectorySource, MirrorRoot, MirrorServer
from alex_models.mirror.repos import Snapshot

REPO = "org/model"


def snapshot(root: MirrorRoot, commit: str, repo_id: str = REPO) -> Snapshot:
    return DirectorySource(root.root).repo(repo_id).snapshot(commit)


def contents(root: MirrorRoot, commit: str) -> dict[str, bytes]:
    return {path: f.disk_path.read_bytes() for path, f in snapshot(root, commit).files.items()}


def lfs_pointer(data: bytes) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
        f"size {len(data)}\n"
    ).encode()


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        ["git", "-c", "user.name=x", "-c", "user.email=x", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        check=True,
    )
    return result.stdout.decode().strip()


# -- commits ------------------------------------------------------------------------------------------


def make_history(root: MirrorRoot, tmp_path: Path) -> list[str]:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x00\x01" * 50_000)
    first = root.commit(REPO, {"config.json": b"{}", "weights.bin": big}, message="first")
    second = root.commit(REPO, {"config.json": b'{"a": 1}'}, message="second")
    tagged = root.commit(REPO, {"extra.txt": b"x"}, branch=None, parent=first)
    return [first, second, tagged]


def test_commit_ids_are_deterministic_across_roots(tmp_path: Path) -> None:
    one = make_history(MirrorRoot(tmp_path / "one"), tmp_path)
    two = make_history(MirrorRoot(tmp_path / "two"), tmp_path)

    assert one == two
    assert len(set(one)) == 3
    assert all(len(c) == 40 and c == c.lower() and int(c, 16) >= 0 for c in one)


@pytest.mark.parametrize(
    "change",
    [
        {"message": "other"},
        {"files": {"config.json": b"{ }"}},
        {"files": {"renamed.json": b"{}"}},
        {"parent": "0" * 40},
    ],
)
def test_commit_id_depends_on_content_parent_and_message(tmp_path: Path, change: dict[str, Any]) -> None:
    # Any: the case's change replaces any of MirrorRoot.commit's keywords.
    base: dict[str, Any] = {"files": {"config.json": b"{}"}, "message": "m", "branch": None}
    root = MirrorRoot(tmp_path / "root")
    root.create_repo(REPO)
    (root.repo_dir(REPO) / ("0" * 40)).mkdir()  # the parent of the "parent" case, empty

    original = root.commit(REPO, **base)
    changed = root.commit(REPO, **{**base, **change})

    assert changed != original


def test_commit_inherits_parent_files_and_delete_removes_them(mirror_root: MirrorRoot) -> None:
    first = mirror_root.commit(REPO, {"a.txt": b"a", "b.txt": b"b", "sub/c.txt": b"c", "sub/d.txt": b"d"})
    second = mirror_root.commit(REPO, {"b.txt": b"B", "new.txt": b"n"}, delete=["a.txt", "sub/d.txt"])

    assert contents(mirror_root, second) == {"b.txt": b"B", "sub/c.txt": b"c", "new.txt": b"n"}
    assert contents(mirror_root, first) == {
        "a.txt": b"a",
        "b.txt": b"b",
        "sub/c.txt": b"c",
        "sub/d.txt": b"d",
    }
    assert DirectorySource(mirror_root.root).repo(REPO).resolve("main") == second


def test_commit_on_explicit_parent_leaves_refs_alone(mirror_root: MirrorRoot) -> None:
    first = mirror_root.commit(REPO, {"a.txt": b"a"})
    head = mirror_root.commit(REPO, {"b.txt": b"b"})

    side = mirror_root.commit(REPO, {"c.txt": b"c"}, parent=first, branch=None)

    assert contents(mirror_root, side) == {"a.txt": b"a", "c.txt": b"c"}
    assert DirectorySource(mirror_root.root).repo(REPO).resolve("main") == head


def test_branches_and_tags_resolve_by_short_and_full_name(mirror_root: MirrorRoot) -> None:
    first = mirror_root.commit(REPO, {"a.txt": b"a"})
    second = mirror_root.commit(REPO, {"a.txt": b"b"}, branch="feature/x")
    mirror_root.set_tag(REPO, "v1.0", first)
    repo = DirectorySource(mirror_root.root).repo(REPO)

    resolved = {rev: repo.resolve(rev) for rev in ("main", "feature/x", "refs/heads/feature/x", "v1.0",
                                                   "refs/tags/v1.0", second)}  # fmt: skip

    assert resolved == {"main": first, "feature/x": second, "refs/heads/feature/x": second, "v1.0": first,
                        "refs/tags/v1.0": first, second: second}  # fmt: skip


# -- LFS classification -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "size", "threshold", "lfs"),
    [
        ("model.gguf", 10, None, True),
        ("sub/model-00001-of-00002.safetensors", 1, None, True),
        ("pytorch_model.bin", 1, None, True),
        ("tokenizer.model", 1, None, True),
        ("saved_model/variables/data", 1, None, True),
        ("notes.txt", 101, 100, True),  # over the threshold
        ("notes.txt", 100, 100, False),  # at the threshold: still git
        ("config.json", 2000, None, False),
        ("tokenizer.json", 2000, None, False),
        ("README.md", 10, None, False),
    ],
)
def test_lfs_classification(
    mirror_root: MirrorRoot, path: str, size: int, threshold: int | None, lfs: bool
) -> None:
    data = hashlib.shake_256(path.encode()).digest(size)
    if threshold is not None:
        mirror_root.create_repo(REPO, lfs_threshold=threshold)
    commit = mirror_root.commit(REPO, {path: data})

    item = snapshot(mirror_root, commit).files[path]

    assert item.is_lfs is lfs
    assert item.size == size
    if lfs:
        assert item.sha256 == hashlib.sha256(data).hexdigest()
        assert item.etag == item.sha256
        assert item.pointer_size == len(lfs_pointer(data))
    else:
        assert item.sha256 is None


# -- hashes agree with real git ------------------------------------------------------------------------

GIT_FILES: Mapping[str, bytes] = {
    "README.md": b"# model\n",
    "config.json": b'{"hidden_size": 64}\n',
    "empty.txt": b"",
    "model.gguf": b"GGUF" + bytes(range(256)) * 40,
    "sub/a.txt": b"a\n",
    "sub/z.txt": b"z\n",
    "sub/\u00fcn\u00ef.txt": b"unicode\n",
    "sub/deeper/b.txt": b"b\n",
    "sub/deeper/weights.safetensors": b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
    # Git orders "sub-x" < "sub/" < "sub0": folders sort as if their name ended in "/".
    "sub-x.txt": b"dash\n",
    "sub.txt": b"dot\n",
    "sub0/c.txt": b"c\n",
    "sub0/deeper/b.txt": b"b\n",  # the same subtree as sub/deeper minus one file
}


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A real git work tree holding GIT_FILES as git stores them: LFS files as their pointer."""
    work = tmp_path / "git-work"
    work.mkdir()
    git(work, "init", "-q")
    for path, data in GIT_FILES.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(lfs_pointer(data) if path.endswith((".gguf", ".safetensors")) else data)
        target.chmod(0o644)
    git(work, "add", "-A")
    return work


def test_git_blob_ids_equal_git_hash_object(mirror_root: MirrorRoot, git_repo: Path) -> None:
    files = snapshot(mirror_root, mirror_root.commit(REPO, GIT_FILES)).files

    for path in GIT_FILES:
        assert files[path].git_oid == git(git_repo, "hash-object", "--", path), path


def test_folder_ids_equal_the_trees_git_writes(mirror_root: MirrorRoot, git_repo: Path) -> None:
    dirs = snapshot(mirror_root, mirror_root.commit(REPO, GIT_FILES)).dirs
    tree = git(git_repo, "write-tree")

    assert set(dirs) == {"sub", "sub/deeper", "sub0", "sub0/deeper"}
    for folder, item in dirs.items():
        assert item.git_oid == git(git_repo, "rev-parse", f"{tree}:{folder}"), folder


def test_tree_endpoint_reports_git_ids(mirror_root: MirrorRoot, mirror: MirrorServer, git_repo: Path) -> None:
    mirror_root.commit(REPO, GIT_FILES)
    tree = git(git_repo, "write-tree")

    entries = httpx2.get(f"{mirror.url}/api/models/{REPO}/tree/main?recursive=true").json()

    assert {e["path"]: e["oid"] for e in entries} == {
        path: git(git_repo, "rev-parse", f"{tree}:{path}") for path in [*GIT_FILES, "sub", "sub/deeper", "sub0",
                                                                          "sub0/deeper"]
    }  # fmt: skip


# -- broken settings files ----------------------------------------------------------------------------

BROKEN_JSON = '{\n  "branches": {\n    "main": ,\n  }\n}\n'  # the error is on line 3


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("refs.json", lambda root: DirectorySource(root.root).repo(REPO).refs),
        ("refs.json", lambda root: DirectorySource(root.root).repo(REPO).resolve("main")),
        ("refs.json", lambda root: root.commit(REPO, {"b.txt": b"b"})),
        ("repo.json", lambda root: DirectorySource(root.root).repo(REPO).settings),
        ("repo.json", lambda root: DirectorySource(root.root).all_tokens()),
    ],
)
def test_broken_settings_file_is_a_user_error_naming_file_and_line(
    mirror_root: MirrorRoot, name: str, read: Callable[[MirrorRoot], object]
) -> None:
    mirror_root.commit(REPO, {"a.txt": b"a"})
    broken = mirror_root.repo_dir(REPO) / name
    broken.write_text(BROKEN_JSON)

    with pytest.raises(UserError) as excinfo:
        read(mirror_root)

    assert str(broken) in str(excinfo.value)
    assert "line 3" in str(excinfo.value)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("refs.json", "[]", "JSON object"),
        ("refs.json", '{"branches": {"main": "not-a-commit"}}', "branches"),
        ("refs.json", '{"tags": ["v1"]}', "tags"),
        ("repo.json", '{"gated": "yes"}', "gated"),
        ("repo.json", '{"tokens": "hf_x"}', "tokens"),
        ("repo.json", '{"lfs_threshold": -1}', "lfs_threshold"),
    ],
)
def test_wrong_shape_settings_file_is_a_user_error_naming_the_problem(
    mirror_root: MirrorRoot, name: str, text: str, problem: str
) -> None:
    mirror_root.commit(REPO, {"a.txt": b"a"})
    broken = mirror_root.repo_dir(REPO) / name
    broken.write_text(text)
    repo = DirectorySource(mirror_root.root).repo(REPO)

    with pytest.raises(UserError) as excinfo:
        repo.refs if name == "refs.json" else repo.settings  # noqa: B018

    assert str(broken) in str(excinfo.value)
    assert problem in str(excinfo.value)


# -- symlinked snapshots --------------------------------------------------------------------------------

COMMIT = "1234567890abcdef1234567890abcdef12345678"


def hf_cache_snapshot(root: MirrorRoot, tmp_path: Path, files: Mapping[str, bytes]) -> None:
    """A commit laid out like a Hugging Face cache snapshot: relative symlinks into a blobs folder."""
    blobs = tmp_path / "cache" / "blobs"
    blobs.mkdir(parents=True)
    commit_dir = root.repo_dir(REPO) / COMMIT
    for path, data in files.items():
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = commit_dir / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (commit_dir / "dangling.txt").symlink_to("../nowhere")
    root.set_branch(REPO, "main", COMMIT)


@pytest.mark.symlinks("a commit laid out with symlinks, as a Hugging Face cache snapshot is")
def test_symlinked_files_inside_a_commit_are_served(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path
) -> None:
    files = {"config.json": b'{"a": 1}\n', "sub/tokenizer.json": b"{}\n", "model.gguf": b"GGUF" * 1000}
    mirror_root.create_repo(REPO)
    hf_cache_snapshot(mirror_root, tmp_path, files)

    with httpx2.Client(base_url=mirror.url, follow_redirects=True) as client:
        tree = client.get(f"/api/models/{REPO}/tree/main?recursive=true").json()
        served = {path: client.get(f"/{REPO}/resolve/main/{path}") for path in files}
        dangling = client.get(f"/{REPO}/resolve/main/dangling.txt")

    assert {e["path"]: e["size"] for e in tree if e["type"] == "file"} == {
        p: len(d) for p, d in files.items()
    }
    assert {path: r.content for path, r in served.items()} == files
    assert all(r.headers["X-Repo-Commit"] == COMMIT for path, r in served.items() if path != "model.gguf")
    assert dangling.status_code == 404


# -- what MirrorRoot refuses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "repo_id",
    ["model", "org/name/extra", "../x", "org/..", "../../etc", "org/.hidden", "org/a..b", "org/na me", "", "org/",
     "/name", "org\\name", "org/name\0", "org/-x"],
)  # fmt: skip
def test_commit_refuses_invalid_repo_ids(mirror_root: MirrorRoot, repo_id: str) -> None:
    with pytest.raises(UserError, match="invalid repo id"):
        mirror_root.commit(repo_id, {"a.txt": b"a"})

    assert list(mirror_root.root.iterdir()) == []


@pytest.mark.parametrize(
    "path", ["../x", "sub/../../x", "/abs", "a\\b", "a//b", "a\0b", "./a", "a/.", "", "C:x", "sub/"]
)
def test_commit_refuses_paths_that_could_escape(mirror_root: MirrorRoot, path: str) -> None:
    head = mirror_root.commit(REPO, {"a.txt": b"a"})

    with pytest.raises(UserError, match="refusing file path"):
        mirror_root.commit(REPO, {path: b"escaped"})

    repo_dir = mirror_root.repo_dir(REPO)
    assert DirectorySource(mirror_root.root).repo(REPO).resolve("main") == head
    assert sorted(p.name for p in repo_dir.iterdir()) == sorted([head, "refs.json", "repo.json"])
    assert not (repo_dir.parent / "x").exists()
    assert not Path("/abs").exists()
