"""The content-addressed store: verified blobs, partial downloads, views for llama.cpp.

Layout under the store home (``$ALEX_MODELS_HOME``, default ``~/.alex/models``)::

    CACHEDIR.TAG                              backup tools skip the store
    blobs/sha256/ab/abcdef…                   verified content, read-only, one copy per content
    tmp/<sha256>.part, tmp/<sha256>.json      a partial download and its progress record
    locks/<sha256>.lock                       one file lock per blob: one downloader at a time
    state/verified/<sha256>                   known-good stat record (size, mtime_ns, inode)
    state/copies/<sha256 of the view's path>  a view that is a copy: its blob and stat record
    state/locks.json                          lock files that synced into this store (for gc)
    pulls/<org>--<name>--<file>.lock          what ``pull`` fetched, as one-model locks (gc keeps it)
    llama.cpp/hf/<org>/<name>/<commit>/<path> views: hard links to blobs (symlinks, else copies,
                                              where the filesystem has no hard links)
    llama.cpp/url/<sha256>/<file name>        views of plain-URL sources
    llama.cpp/oci/<registry>/<repository>/<digest>/<path>
                                              views of registry artifacts (``:`` written ``_``)

A blob enters ``blobs/`` only after its size and SHA256 match the lock: it is written in ``tmp/``,
fsynced, made read-only and renamed into place. Nothing in ``blobs/`` is ever rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from alex_models._fs import atomic_write, link_atomically, safe_relpath, sha256_file
from alex_models._platform import flush, flush_directory, open_fd, remove, replace
from alex_models.errors import UserError
from alex_models.lock import LockedFile, LockedModel

if TYPE_CHECKING:  # imported where a lock is taken: status, path and a no-op sync take none
    from filelock import FileLock

_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by alex-models.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def blob_key(sha256: str) -> str:
    """Where a blob lives below a store's home, and below a remote's prefix (a store folder is a
    remote): ``blobs/sha256/<first two hex>/<sha256>``."""
    return f"blobs/sha256/{sha256[:2]}/{sha256}"


def published_keys(lock_text: bytes) -> tuple[str, str]:
    """Where a remote (or a bundle) holds a published lock and its manifest:
    ``locks/<sha256 of the lock's text>.lock`` and ``.yaml`` beside it. A name per content, so
    publishing different locks never replaces one, and the name vouches for the text."""
    stem = f"locks/{hashlib.sha256(lock_text).hexdigest()}"
    return f"{stem}.lock", f"{stem}.yaml"


class Store:
    """One store home. Every path the tool writes under it comes from here."""

    def __init__(self, home: Path) -> None:
        self.home = home.expanduser().absolute()

    @cached_property
    def writable(self) -> bool:
        """Whether this process may write the store: the one place that decides it.

        ``access(2)`` answers for a read-only mount (EROFS) and for missing permissions alike, and
        writes nothing. A read-only store (a pre-synced shared volume) serves every command that
        only reads; its stat records, file locks and lock registry are skipped, not written.
        """
        existing = self.home
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent  # a store not made yet is writable where it would be made
        return os.access(existing, os.W_OK)

    def require_writable(self, needs: str) -> None:
        """Raise the one error for a read-only store, saying what ``needs`` a write."""
        if not self.writable:
            raise UserError(
                f"the store {self.home} is read-only, and {needs}",
                hint="run this where the store is writable, or point ALEX_MODELS_HOME "
                "(or 'store:' in models.yaml) at a writable folder",
            )

    def init(self) -> Store:
        if not self.writable:
            return self  # a read-only store is used as it is; what must write asks require_writable
        self.home.mkdir(parents=True, exist_ok=True)
        for sub in ("blobs/sha256", "tmp", "locks", "state/verified", "llama.cpp", "pulls"):
            self._check_inside(self.home / sub)  # a planted symlink here would lead writes elsewhere
        tag = self.home / "CACHEDIR.TAG"
        if not tag.exists():
            atomic_write(tag, _CACHEDIR_TAG.encode())
        return self

    # -- blobs -------------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        return self.home / blob_key(sha256)

    def partial_path(self, sha256: str) -> Path:
        return self.home / "tmp" / f"{sha256}.part"

    def progress_path(self, sha256: str) -> Path:
        return self.home / "tmp" / f"{sha256}.json"

    def blob_lock(self, sha256: str) -> FileLock:
        """The lock one process holds while it downloads or promotes this blob."""
        return self._file_lock(sha256)

    def _file_lock(self, name: str) -> FileLock:
        from filelock import FileLock  # noqa: PLC0415

        return FileLock(self.home / "locks" / f"{name}.lock")

    def has_blob(self, sha256: str, size: int) -> bool:
        """Whether a verified blob is present, trusting the stat record written when it was verified.

        A blob without a matching record (copied in, touched, replaced) is hashed again; one that
        fails is removed, so it is downloaded again rather than trusted.
        """
        path = self.blob_path(sha256)
        st = self._blob_stat(sha256)
        if st is None or st.st_size != size:
            return False
        if self._record(sha256) == _stat_key(st):
            return True
        if sha256_file(path) != sha256:
            if self.writable:  # a read-only store keeps it; it is not trusted all the same
                self.discard_blob(sha256)
            return False
        self._write_record(sha256, st)
        return True

    def verify_blob(self, sha256: str, size: int) -> bool:
        """Re-hash the blob, whatever its stat record says. False if it is missing or differs."""
        path = self.blob_path(sha256)
        st = self._blob_stat(sha256)
        if st is None or st.st_size != size or sha256_file(path) != sha256:
            return False
        self._write_record(sha256, st)
        return True

    def _blob_stat(self, sha256: str) -> os.stat_result | None:
        """The blob's own stat, or None unless it is a regular file in a real folder of the store.

        A symlink (the blob, or its shard folder) is never trusted: its bytes live outside the store
        and can change without the store knowing.
        """
        path = self.blob_path(sha256)
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        if path.parent.is_symlink() or not stat.S_ISREG(st.st_mode):
            return None
        return st

    def promote(self, partial: Path, sha256: str) -> Path:
        """Move a verified partial file into ``blobs/``: fsync, read-only, rename."""
        fd = open_fd(partial, os.O_RDONLY)
        try:
            flush(fd)
        finally:
            os.close(fd)
        partial.chmod(0o444)
        target = self.blob_path(sha256)
        self._check_inside(target.parent)  # never rename through a planted symlink
        replace(partial, target)  # a symlink planted as the blob itself is replaced, not followed
        flush_directory(target.parent)
        self._write_record(sha256, target.stat())
        self.progress_path(sha256).unlink(missing_ok=True)
        return target

    def discard_blob(self, sha256: str) -> None:
        remove(self.blob_path(sha256))
        (self.home / "state" / "verified" / sha256).unlink(missing_ok=True)

    def _record(self, sha256: str) -> str | None:
        try:
            return (self.home / "state" / "verified" / sha256).read_text(encoding="ascii")
        except FileNotFoundError:
            return None

    def _write_record(self, sha256: str, st: os.stat_result) -> None:
        if not self.writable:
            return  # only saves a later re-hash: a read-only store re-hashes instead
        atomic_write(self.home / "state" / "verified" / sha256, _stat_key(st).encode())

    def blobs(self) -> Iterator[Path]:
        """Every blob file. Symlinks (a shard folder or a blob) are skipped: gc must never delete
        through one, and ``has_blob`` never trusts one, so a sync replaces a planted blob link."""
        for shard in (self.home / "blobs" / "sha256").iterdir():
            if shard.is_dir() and not shard.is_symlink():
                yield from (blob for blob in shard.iterdir() if blob.is_file() and not blob.is_symlink())

    # -- views -------------------------------------------------------------------------------------

    def view_path(self, entry: LockedModel, file: LockedFile) -> Path:
        """Where llama.cpp finds ``file`` of ``entry``: shards of one model side by side."""
        relpath = safe_relpath(file.path, what="locked file path")
        if entry.source == "hf" and entry.repo is not None and entry.commit is not None:
            org, name = entry.repo.split("/")
            return self.home / "llama.cpp" / "hf" / org / name / entry.commit / relpath
        if entry.source == "oci" and entry.registry and entry.repository and entry.digest:
            # A registry's ":port" is no name Windows can hold; a digest's "sha256:" neither.
            registry = entry.registry.replace(":", "_")
            folder = self.home / "llama.cpp" / "oci" / registry / entry.repository
            return folder / entry.digest.removeprefix("sha256:") / relpath
        return self.home / "llama.cpp" / "url" / file.sha256 / relpath

    def link_view(self, view: Path, sha256: str) -> None:
        """Make ``view`` a hard link to the blob (a symlink where hard links are impossible, a
        recorded copy where both are: exFAT, some network shares).

        The view's folders must lie inside the store: a symlink planted in a view folder that
        points elsewhere is refused, never followed.
        """
        blob = self.blob_path(sha256)
        if self.view_in_place(view, sha256):
            return
        self.require_writable(f"the view {view} is missing")
        self._check_inside(view.parent)
        if link_atomically(view, blob) == "copy":
            self._record_copy(view, sha256)

    def view_in_place(self, view: Path, sha256: str) -> bool:
        """Whether ``view`` leads to the blob: its hard link, the symlink made where none is possible,
        or the copy made where neither is, unchanged since (its stat record).

        Only folders inside the store count: a view reached through a planted symlink is not in place.
        """
        current = self.home
        for part in view.parent.relative_to(self.home).parts:
            current = current / part
            if current.is_symlink():
                return False
        try:
            return view.samefile(self.blob_path(sha256)) or self._copy_recorded(view, sha256)
        except OSError:
            return False

    def verify_view(self, view: Path, sha256: str) -> bool:
        """Whether the view holds the blob's bytes: a link does; any other file is re-hashed (a
        copy, where links are impossible). One that differs is removed, so ``sync`` makes it again."""
        try:
            if view.samefile(self.blob_path(sha256)):
                return True
        except FileNotFoundError:
            return True  # missing: status says so, and sync makes it
        if view.is_file() and not view.is_symlink() and sha256_file(view) == sha256:
            self._record_copy(view, sha256)
            return True
        self.remove_view(view)
        return False

    def remove_view(self, view: Path) -> None:
        """Delete a view, and its record if it is a copy."""
        remove(view)  # a hard link to a read-only blob, which Windows will not delete as is
        remove(self._copy_record_path(view))

    def _copy_recorded(self, view: Path, sha256: str) -> bool:
        try:
            record = self._copy_record_path(view).read_text(encoding="ascii")
            st = view.lstat()
        except FileNotFoundError:
            return False
        return stat.S_ISREG(st.st_mode) and record == f"{sha256} {_stat_key(st)}"

    def _record_copy(self, view: Path, sha256: str) -> None:
        atomic_write(self._copy_record_path(view), f"{sha256} {_stat_key(view.lstat())}".encode())

    def _copy_record_path(self, view: Path) -> Path:
        key = hashlib.sha256(str(view.relative_to(self.home)).encode()).hexdigest()
        return self.home / "state" / "copies" / key

    def model_state(self, entry: LockedModel) -> ModelState:
        """Which files of ``entry`` are synced: verified blob present and view in place.

        The one definition of "synced" that ``status``, ``path``, ``emit`` and ``probe`` share.
        """
        files = []
        for file in entry.files:
            view = self.view_path(entry, file)
            present = self.has_blob(file.sha256, file.size)
            files.append(FileState(file, view, present, present and self.view_in_place(view, file.sha256)))
        return ModelState(tuple(files))

    def _check_inside(self, folder: Path) -> None:
        # One folder at a time, checked before it is created: mkdir(parents=True) would follow a
        # planted symlink and create folders outside the store before any check could refuse it.
        current = self.home
        for part in folder.relative_to(self.home).parts:
            current = current / part
            if current.is_symlink():
                raise UserError(
                    f"refusing to write under {folder}: a symlink inside the store leads elsewhere",
                    hint=f"remove the symlink {current}",
                )
            current.mkdir(exist_ok=True)

    # -- the registry of locks that synced here ----------------------------------------------------

    def pull_lock_path(self, repo: str, file: str) -> Path:
        """The lock ``pull`` writes for ``file`` of ``repo``: one flat name per (repo, file), never
        shared (a repo id holds no ``--``, and the file's ``/`` and ``%`` are percent-encoded)."""
        org, name = repo.split("/")
        return self.home / "pulls" / f"{org}--{name}--{quote(file, safe='')}.lock"

    def pull_locks(self) -> list[Path]:
        return sorted((self.home / "pulls").glob("*.lock"))

    def register_lock(self, lock_path: Path) -> None:
        """Remember that ``lock_path`` synced into this store, so ``gc`` keeps what it references.

        Skipped on a read-only store: no gc can run there either.
        """
        if not self.writable:
            return
        if str(lock_path.absolute()) in self.registered_locks():
            return  # a sync with nothing to do writes (and flushes) nothing; the file is replaced whole
        with self._file_lock("registry"):
            known = set(self.registered_locks())
            known.add(str(lock_path.absolute()))
            self._write_registry(known)

    def set_registered_locks(self, lock_paths: list[str]) -> None:
        """Keep only ``lock_paths`` in the registry (gc forgets lock files that are gone)."""
        with self._file_lock("registry"):
            self._write_registry(set(lock_paths))

    def _write_registry(self, lock_paths: set[str]) -> None:
        atomic_write(
            self.home / "state" / "locks.json", (json.dumps(sorted(lock_paths), indent=2) + "\n").encode()
        )

    def registered_locks(self) -> list[str]:
        try:
            value = json.loads((self.home / "state" / "locks.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return []
        return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


@dataclass(frozen=True)
class FileState:
    """One locked file in the store."""

    file: LockedFile
    view: Path
    present: bool
    """Its verified blob is in the store."""
    linked: bool
    """Its view leads to that blob."""

    @property
    def synced(self) -> bool:
        return self.present and self.linked


@dataclass(frozen=True)
class ModelState:
    """One locked model in the store: each file's state, in lock order."""

    files: tuple[FileState, ...]

    @property
    def synced(self) -> bool:
        """Every file verified and in place: what llama.cpp can load."""
        return all(f.synced for f in self.files)

    @property
    def state(self) -> Literal["synced", "partial", "missing"]:
        if self.synced:
            return "synced"
        return "partial" if any(f.present for f in self.files) else "missing"

    @property
    def views_missing(self) -> bool:
        """Every blob is present, but some view is not: a sync stopped after storing the bytes."""
        return all(f.present for f in self.files) and not self.synced

    @property
    def hint(self) -> str:
        """What makes it synced."""
        if self.views_missing:
            return "views missing; run 'alex-models sync' or 'alex-models status --fix'"
        return "run 'alex-models sync'"


def _stat_key(st: os.stat_result) -> str:
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"
