"""Use case ``gc``: remove what no registered lock (a project's, or a pull's) references."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from filelock import Timeout

from alex_models.api._context import read_lock, store_for
from alex_models.errors import IntegrityError, UserError
from alex_models.store import Store


@dataclass(frozen=True)
class Removal:
    """One file gc removes (or, with ``dry_run``, would remove)."""

    path: Path
    size: int


@dataclass(frozen=True)
class GcResult:
    """What ``gc`` removed (with ``dry_run``: would remove), and the locks that kept the rest."""

    blobs: tuple[Removal, ...]
    partials: tuple[Removal, ...]
    """Partial downloads; ``size`` is the disk space they take."""
    views: tuple[Removal, ...]
    """Views; ``size`` is the file's (a hard link frees nothing while its blob stays)."""
    kept_locks: tuple[str, ...]
    """The registered lock files that still exist: what they pin stays."""
    forgotten_pulls: tuple[Path, ...]
    """The pull locks ``forget_pulls`` removed (or would remove)."""
    dry_run: bool
    """Nothing was removed; the lists say what would have been."""

    @property
    def removed_blobs(self) -> int:
        return len(self.blobs)

    @property
    def removed_partials(self) -> int:
        return len(self.partials)

    @property
    def removed_views(self) -> int:
        return len(self.views)

    @property
    def bytes_freed(self) -> int:
        return sum(item.size for item in (*self.blobs, *self.partials))


def gc(*, dry_run: bool = False, forget_pulls: bool = False, store_home: Path | None = None) -> GcResult:
    """Remove blobs, views and partial downloads that no registered, still existing lock references.

    ``pull`` registers a lock of its own for what it fetched (``<store>/pulls/``), so a pulled file
    stays until that lock is deleted, or ``forget_pulls`` deletes them all first.
    A blob or partial whose file lock is held (a ``sync`` is fetching it) is never touched.
    """
    store = store_for(None, store_home).init()
    if not dry_run:
        store.require_writable("gc needs to remove what no lock references (--dry-run only lists it)")
    forgotten = _forget_pulls(store, dry_run=dry_run) if forget_pulls else ()
    keep_blobs, keep_views, live_locks = _referenced(store, {str(path) for path in forgotten})
    blobs, partials, views = [], [], []
    for blob in list(store.blobs()):
        if blob.name not in keep_blobs and _removable(store, blob.name):
            blobs.append(Removal(blob, blob.stat().st_size))
            if not dry_run:
                store.discard_blob(blob.name)
    for partial in list((store.home / "tmp").glob("*.part")):
        sha256 = partial.name.removesuffix(".part")
        if sha256 not in keep_blobs and _removable(store, sha256):
            partials.append(Removal(partial, partial.stat().st_blocks * 512))
            if not dry_run:
                partial.unlink(missing_ok=True)
                store.progress_path(sha256).unlink(missing_ok=True)
    for view in [v for v in (store.home / "llama.cpp").rglob("*") if v.is_file() or v.is_symlink()]:
        if view not in keep_views:
            views.append(Removal(view, view.lstat().st_size))
            if not dry_run:
                store.remove_view(view)
    if not dry_run:
        _remove_empty_dirs(store.home / "llama.cpp")
        store.set_registered_locks(live_locks)
    return GcResult(
        tuple(blobs), tuple(partials), tuple(views), tuple(sorted(live_locks)), forgotten, dry_run
    )


def _forget_pulls(store: Store, *, dry_run: bool) -> tuple[Path, ...]:
    """Every pull's lock: deleted (unless ``dry_run``), so gc no longer keeps what they pinned."""
    forgotten = tuple(store.pull_locks())
    if not dry_run:
        for pull_lock in forgotten:
            pull_lock.unlink(missing_ok=True)
    return forgotten


def _referenced(store: Store, forgotten: set[str]) -> tuple[set[str], set[Path], list[str]]:
    """Blobs and views the registered locks (but the ``forgotten`` ones) still pin, and those locks."""
    keep_blobs: set[str] = set()
    keep_views: set[Path] = set()
    live_locks = []
    for lock_file in store.registered_locks():
        if lock_file in forgotten:
            continue
        try:
            current = read_lock(Path(lock_file))
        except (UserError, IntegrityError) as exc:
            # Its blobs cannot be told apart from garbage: removing nothing is the safe answer.
            raise UserError(
                f"gc cannot read {lock_file}, which synced into this store: {exc.message}",
                hint="fix or restore that lock (or delete it if it is gone for good), then run gc again",
            ) from None
        if current is None:
            continue  # the lock file is gone: what it pinned is garbage now
        live_locks.append(lock_file)
        for entry in current.models.values():
            for file in entry.files:
                keep_blobs.add(file.sha256)
                keep_views.add(store.view_path(entry, file))
    return keep_blobs, keep_views, live_locks


def _removable(store: Store, sha256: str) -> bool:
    """Not held by a running sync. The lock is taken and released at once: gc never waits.

    A read-only store takes no lock (it cannot create one); only a dry run gets here then.
    """
    if not store.writable:
        return True
    try:
        with store.blob_lock(sha256).acquire(timeout=0):
            return True
    except Timeout:
        return False


def _remove_empty_dirs(top: Path) -> None:
    for directory in sorted(
        (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with contextlib.suppress(OSError):
            directory.rmdir()
