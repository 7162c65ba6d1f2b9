"""Repositories the mirror serves, read from a plain directory.

Layout of a mirror root::

    ROOT/<org>/<name>/refs.json        {"branches": {"main": "<40-hex>"}, "tags": {"v1.0": "<40-hex>"}}
    ROOT/<org>/<name>/<40-hex>/<path>  the files of that commit (subfolders allowed; commits are immutable)
    ROOT/<org>/<name>/repo.json        optional: {"private": bool, "gated": false|"auto"|"manual",
                                       "tokens": ["hf_..."], "lfs_threshold": bytes, "disabled": bool}

Files inside a commit may be symlinks to regular files, so a Hugging Face cache snapshot
(``snapshots/<commit>/``, all symlinks into ``blobs/``) can be served as it is.

A file is stored in LFS, as on the Hub, when its name matches the Hub's default LFS patterns or it
is larger than ``lfs_threshold``. Its listing then carries the SHA256 of the content, and its git
oid is the SHA-1 of the LFS pointer text; other files are plain git blobs.

``alex_models.mirror.root.MirrorRoot`` writes repos, commits, branches and tags in this layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from alex_models._fs import sha256_file
from alex_models._ids import COMMIT_RE, is_repo_id
from alex_models.errors import UserError
from alex_models.hubfiles import DEFAULT_LFS_THRESHOLD, git_blob_sha1, is_lfs_path, lfs_pointer

GatedMode = Literal[False, "auto", "manual"]


class NoSuchRepo(LookupError):
    """The repo does not exist in the mirror root."""


class NoSuchRevision(LookupError):
    """The revision is neither a branch, a tag nor a commit of the repo."""


@dataclass(frozen=True)
class RepoSettings:
    """Access rules and storage rules of one repo (``repo.json``)."""

    private: bool = False
    gated: GatedMode = False
    tokens: frozenset[str] = frozenset()
    lfs_threshold: int = DEFAULT_LFS_THRESHOLD
    disabled: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "private": self.private,
            "gated": self.gated,
            "tokens": sorted(self.tokens),
            "lfs_threshold": self.lfs_threshold,
            "disabled": self.disabled,
        }


@dataclass(frozen=True)
class Refs:
    """Branch and tag names of a repo, each pointing at a commit."""

    branches: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RepoFile:
    """One file of one commit, with the hashes the Hub reports for it."""

    path: str
    size: int
    git_oid: str
    """Git blob SHA-1 of the content, or of the LFS pointer for an LFS file."""
    sha256: str | None
    """SHA256 of the content for an LFS file; None for a plain git file."""
    disk_path: Path

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def etag(self) -> str:
        """The Hub's ETag: the SHA256 for LFS files, the git blob SHA-1 otherwise."""
        return self.sha256 if self.sha256 is not None else self.git_oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256 or "", self.size))


@dataclass(frozen=True)
class RepoDir:
    """A folder inside a commit, with the git tree SHA-1 of its content."""

    path: str
    git_oid: str


@dataclass(frozen=True)
class Snapshot:
    """Everything one commit holds: files and folders by path, and when it was made."""

    commit: str
    files: Mapping[str, RepoFile]
    dirs: Mapping[str, RepoDir]
    date: datetime


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """Split ``org/name``; raise ``UserError`` for anything else (it becomes a path under the root)."""
    if not is_repo_id(repo_id):
        raise UserError(
            f"invalid repo id {repo_id!r}", hint="a repo id is 'org/name' with letters, digits, '.', '_', '-'"
        )
    org, name = repo_id.split("/")
    return org, name


class _HashCache:
    """Hashes of files on disk, keyed by what changes when the file does.

    Commits are immutable, so a server hashes each file once; the key still includes size, mtime
    and inode so that a file replaced by hand is hashed again rather than served with a stale hash.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, int, int, int, bool], tuple[str, str | None]] = {}

    def hashes(self, disk_path: Path, st: os.stat_result, lfs: bool) -> tuple[str, str | None]:
        key = (str(disk_path), st.st_size, st.st_mtime_ns, st.st_ino, lfs)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        if lfs:
            sha256 = sha256_file(disk_path)
            result: tuple[str, str | None] = (git_blob_sha1(lfs_pointer(sha256, st.st_size)), sha256)
        else:
            result = (git_blob_sha1(disk_path.read_bytes()), None)
        with self._lock:
            self._known[key] = result
        return result


def _git_tree_sha1(entries: Iterable[tuple[str, bool, str]]) -> str:
    """Git tree object id of a folder from its (name, is_dir, child oid) entries."""
    # Git sorts tree entries by name, with folders compared as if their name ended in '/'.
    ordered = sorted(entries, key=lambda e: e[0] + "/" if e[1] else e[0])
    body = b"".join(
        (b"40000 " if is_dir else b"100644 ") + name.encode() + b"\0" + bytes.fromhex(oid)
        for name, is_dir, oid in ordered
    )
    return hashlib.sha1(b"tree %d\0" % len(body) + body, usedforsecurity=False).hexdigest()


class Repo:
    """One repo of a mirror root. Reads ``repo.json`` and ``refs.json`` afresh on each call,
    so a running server sees commits, branches and tags added while it runs."""

    def __init__(self, repo_id: str, directory: Path, hashes: _HashCache) -> None:
        self.id = repo_id
        self.dir = directory
        self._hashes = hashes

    @property
    def settings(self) -> RepoSettings:
        raw = read_json_object(self.dir / "repo.json", missing_ok=True)
        gated = raw.get("gated", False)
        tokens = raw.get("tokens", [])
        threshold = raw.get("lfs_threshold", DEFAULT_LFS_THRESHOLD)
        if gated not in (False, "auto", "manual"):
            raise _bad_file(
                self.dir / "repo.json", f'\'gated\' must be false, "auto" or "manual", not {gated!r}'
            )
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise _bad_file(self.dir / "repo.json", "'tokens' must be a list of strings")
        if not isinstance(threshold, int) or threshold < 0:
            raise _bad_file(self.dir / "repo.json", "'lfs_threshold' must be a whole number of bytes")
        return RepoSettings(
            private=bool(raw.get("private", False)),
            gated=gated,
            tokens=frozenset(tokens),
            lfs_threshold=threshold,
            disabled=bool(raw.get("disabled", False)),
        )

    @property
    def refs(self) -> Refs:
        path = self.dir / "refs.json"
        raw = read_json_object(path, missing_ok=True)
        maps: dict[str, dict[str, str]] = {}
        for kind in ("branches", "tags"):
            names = raw.get(kind, {})
            if not isinstance(names, dict) or not all(
                isinstance(v, str) and COMMIT_RE.fullmatch(v) for v in names.values()
            ):
                raise _bad_file(path, f"'{kind}' must map names to 40-hex commit ids")
            maps[kind] = names
        return Refs(branches=maps["branches"], tags=maps["tags"])

    def resolve(self, revision: str) -> str:
        """The commit a branch, tag (also as ``refs/heads/x``, ``refs/tags/x``) or commit id names."""
        return resolve_revision(self.refs, revision, lambda commit: (self.dir / commit).is_dir())

    def snapshot(self, commit: str) -> Snapshot:
        """All files and folders of ``commit``, hashed (once per file per process)."""
        base = self.dir / commit
        threshold = self.settings.lfs_threshold
        files: dict[str, RepoFile] = {}
        for dirpath, _, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(base).as_posix()
            rel_dir = "" if rel_dir == "." else rel_dir
            for name in filenames:
                disk_path = Path(dirpath) / name
                try:
                    st = disk_path.stat()  # follows symlinks: HF cache snapshots are symlinks
                except FileNotFoundError:
                    continue  # a dangling symlink is not a file of the commit
                if not disk_path.is_file():
                    continue
                rel = f"{rel_dir}/{name}" if rel_dir else name
                git_oid, sha256 = self._hashes.hashes(disk_path, st, is_lfs_path(rel, st.st_size, threshold))
                files[rel] = RepoFile(rel, st.st_size, git_oid, sha256, disk_path)
        return build_snapshot(commit, files, datetime.fromtimestamp(base.stat().st_mtime, tz=UTC))

    def local_file(self, commit: str, item: RepoFile) -> RepoFile:
        """A file of the folder: its bytes are always here."""
        return item


def resolve_revision(refs: Refs, revision: str, has_commit: Callable[[str], bool]) -> str:
    """The commit a branch, tag (also as ``refs/heads/x``, ``refs/tags/x``) or commit id names."""
    candidates = (
        ("", refs.branches),
        ("", refs.tags),
        ("refs/heads/", refs.branches),
        ("refs/tags/", refs.tags),
    )
    for prefix, names in candidates:
        if revision.startswith(prefix) and (commit := names.get(revision[len(prefix) :])):
            return commit
    if COMMIT_RE.fullmatch(revision) and has_commit(revision):
        return revision
    raise NoSuchRevision(revision)


def build_snapshot(commit: str, files: Mapping[str, RepoFile], date: datetime) -> Snapshot:
    """A commit's snapshot from its files: the folders they imply, each with its git tree SHA-1
    (git keeps no empty folders, so only the files' parents are folders)."""
    children: dict[str, list[tuple[str, bool, str]]] = {"": []}
    for rel, item in files.items():
        parent, _, name = rel.rpartition("/")
        while parent not in children:
            children[parent] = []
            parent = parent.rpartition("/")[0]
        children[rel.rpartition("/")[0]].append((name, False, item.git_oid))
    dirs: dict[str, RepoDir] = {}
    # Deepest folders first, so each folder's children have their oids when it is hashed.
    for rel in sorted(children, key=lambda d: d.count("/") + (d != ""), reverse=True):
        oid = _git_tree_sha1(children[rel])
        if rel:
            dirs[rel] = RepoDir(rel, oid)
            parent, _, name = rel.rpartition("/")
            children[parent].append((name, True, oid))
    return Snapshot(commit=commit, files=dict(files), dirs=dirs, date=date)


class DirectorySource:
    """The repos under a mirror root directory."""

    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise UserError(
                f"mirror root {root} is not a directory",
                hint="create it, or point --root at a folder laid out as ROOT/<org>/<name>/<commit>/",
            )
        self.root = root
        self._hashes = _HashCache()

    def repo(self, repo_id: str) -> Repo:
        try:
            org, name = check_repo_id(repo_id)
        except UserError:
            raise NoSuchRepo(repo_id) from None
        directory = self.root / org / name
        if not directory.is_dir():
            raise NoSuchRepo(repo_id)
        return Repo(repo_id, directory, self._hashes)

    def all_tokens(self) -> frozenset[str]:
        """Every token some repo accepts: a token outside this set is an invalid credential."""
        tokens: set[str] = set()
        for settings_file in self.root.glob("*/*/repo.json"):
            tokens.update(
                self.repo(f"{settings_file.parent.parent.name}/{settings_file.parent.name}").settings.tokens
            )
        return frozenset(tokens)


def read_json_object(path: Path, *, missing_ok: bool) -> dict[str, object]:
    """A JSON object from a mirror root's file (``refs.json``, ``repo.json``), or the admin's error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return {}
        raise
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad_file(path, f"line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(value, dict):
        raise _bad_file(path, "expected a JSON object")
    return value


def _bad_file(path: Path, problem: str) -> UserError:
    return UserError(f"{path}: {problem}", hint="fix the file; the layout is described in alex_models.mirror")
