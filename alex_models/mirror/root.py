"""``MirrorRoot``: writes repos, commits, branches and tags into a mirror root (the layout in
``alex_models.mirror.repos``), for tests, benchmarks and the demo."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from alex_models._fs import atomic_write, safe_relpath, sha256_file
from alex_models._ids import COMMIT_RE
from alex_models._platform import make_link, remove_tree
from alex_models.errors import UserError
from alex_models.hubfiles import DEFAULT_LFS_THRESHOLD
from alex_models.mirror.repos import GatedMode, RepoSettings, check_repo_id, read_json_object

FileContent = bytes | Path


class MirrorRoot:
    """Writes repos into a mirror root: repos, commits, branches and tags.

    Commit ids are derived from the content, the parent and the message, so the same calls give
    the same ids on every machine (tests can rely on them being stable).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def repo_dir(self, repo_id: str) -> Path:
        org, name = check_repo_id(repo_id)
        return self.root / org / name

    def create_repo(
        self,
        repo_id: str,
        *,
        private: bool = False,
        gated: GatedMode = False,
        tokens: Iterable[str] = (),
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        disabled: bool = False,
    ) -> Path:
        """Create (or update the settings of) a repo; returns its directory."""
        directory = self.repo_dir(repo_id)
        directory.mkdir(parents=True, exist_ok=True)
        settings = RepoSettings(private, gated, frozenset(tokens), lfs_threshold, disabled)
        atomic_write(directory / "repo.json", _json_bytes(settings.to_json()))
        if not (directory / "refs.json").exists():
            self._write_refs(directory, {"branches": {}, "tags": {}})
        return directory

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, FileContent],
        *,
        branch: str | None = "main",
        parent: str | None = None,
        delete: Iterable[str] = (),
        message: str = "",
    ) -> str:
        """Add a commit and return its id.

        The commit holds ``files`` on top of ``parent``'s files (by default the head of ``branch``,
        if it exists) minus ``delete``. A ``Path`` value is hard-linked when possible (large test
        files cost no copy). ``branch`` is moved to the new commit; ``None`` leaves refs alone.
        """
        directory = self.repo_dir(repo_id)
        if not directory.exists():
            self.create_repo(repo_id)
        refs = read_json_object(directory / "refs.json", missing_ok=True)
        branches = dict(refs.get("branches", {}))  # type: ignore[call-overload]
        if parent is None and branch is not None:
            parent = branches.get(branch)
        contents: dict[str, FileContent] = {**self._files_of(repo_id, parent), **files}
        for path in delete:
            contents.pop(path, None)
        _check_paths(repo_id, contents)
        commit = self._commit_id(contents, parent, message)
        if not (directory / commit).exists():
            _write_commit(directory, commit, contents)
        if branch is not None:
            self.set_branch(repo_id, branch, commit)
        return commit

    def _files_of(self, repo_id: str, commit: str | None) -> dict[str, Path]:
        if commit is None:
            return {}
        commit_dir = self.repo_dir(repo_id) / commit
        if not COMMIT_RE.fullmatch(commit) or not commit_dir.is_dir():
            raise UserError(f"{repo_id} has no commit {commit!r} to build on")
        return {p.relative_to(commit_dir).as_posix(): p for p in commit_dir.rglob("*") if p.is_file()}

    def set_branch(self, repo_id: str, name: str, commit: str) -> None:
        self._set_ref(repo_id, "branches", name, commit)

    def set_tag(self, repo_id: str, name: str, commit: str) -> None:
        self._set_ref(repo_id, "tags", name, commit)

    def _set_ref(self, repo_id: str, kind: str, name: str, commit: str) -> None:
        directory = self.repo_dir(repo_id)
        if not COMMIT_RE.fullmatch(commit) or not (directory / commit).is_dir():
            raise UserError(f"{repo_id} has no commit {commit!r}")
        refs = read_json_object(directory / "refs.json", missing_ok=True)
        names = dict(refs.get(kind, {}))  # type: ignore[call-overload]
        names[name] = commit
        refs[kind] = names
        self._write_refs(directory, refs)

    @staticmethod
    def _write_refs(directory: Path, refs: Mapping[str, object]) -> None:
        atomic_write(directory / "refs.json", _json_bytes(refs))

    @staticmethod
    def _commit_id(contents: Mapping[str, FileContent], parent: str | None, message: str) -> str:
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"parent {parent}\nmessage {message}\n".encode())
        for path in sorted(contents):
            content = contents[path]
            if isinstance(content, Path):
                file_hash = sha256_file(content)
            else:
                file_hash = hashlib.sha256(content).hexdigest()
            digest.update(f"{path}\0{file_hash}\n".encode())
        return digest.hexdigest()


def _check_paths(repo_id: str, contents: Mapping[str, FileContent]) -> None:
    for path in contents:
        safe_relpath(path, what="file path")
        for folder in PurePosixPath(path).parents:
            if str(folder) in contents:
                raise UserError(f"{repo_id}: {folder} cannot be both a file and the folder of {path}")


def _write_commit(directory: Path, commit: str, contents: Mapping[str, FileContent]) -> None:
    """Write the commit's files in a staging folder, then rename it: a commit appears whole or not at all."""
    staging = directory / f".{commit}.tmp"
    remove_tree(staging)
    staging.mkdir(parents=True)
    for path, content in contents.items():
        dest = staging / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            make_link(dest, content.absolute(), ("hard", "copy"))
        else:
            dest.write_bytes(content)
    staging.rename(directory / commit)


def _json_bytes(value: object) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
