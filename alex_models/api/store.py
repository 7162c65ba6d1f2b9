"""Use cases on the store besides ``sync``: ``status``, ``verify``, ``path``, ``gc``, ``pull``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import httpx2
from filelock import Timeout

from alex_models._fs import atomic_write, link_atomically, safe_relpath
from alex_models.api.project import read_lock
from alex_models.api.sync import (
    check_space,
    download_jobs,
    download_missing,
    gguf_checks,
    label,
    link_views,
    main_file,
    require_lock,
    store_choice,
    store_for,
    with_token,
)
from alex_models.download import NoProgress, Progress
from alex_models.errors import IntegrityError, UserError
from alex_models.lock import Lock, LockedFile, LockedModel, drift, dumps
from alex_models.manifest import ModelInput, load_manifest
from alex_models.remote import Remote
from alex_models.resolve import select
from alex_models.settings import Settings, StoreOrigin
from alex_models.store import ModelState, Store

_LISTED_AT_MOST = 8


# -- status, verify, path -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    name: str
    state: Literal["present", "partial", "missing"]
    """How many of its blobs the store holds (all, some, none); ``sync_state`` says whether it is usable."""
    files: int
    present_files: int
    size: int
    present_bytes: int
    main: Path | None
    sync_state: Literal["synced", "partial", "missing"]
    """``synced``: every blob verified and every view in place, so llama.cpp can load it."""
    views_missing: bool
    """Every blob is present but some view is not ('alex-models status --fix' links them)."""
    hint: str | None
    """What makes it synced, when it is not."""

    @property
    def synced(self) -> bool:
        return self.sync_state == "synced"


@dataclass(frozen=True)
class StatusResult:
    lock_path: Path
    store: Path
    stale: tuple[str, ...]
    """The lock's drift from the manifest, described; empty when fresh (or with no manifest)."""
    models: tuple[ModelStatus, ...]
    store_origin: StoreOrigin = "given"
    store_overridden: Path | None = None
    """The manifest's ``store:``, when ``ALEX_MODELS_HOME`` set it aside."""
    linked: tuple[Path, ...] = ()
    """Views ``fix`` linked."""

    @property
    def synced(self) -> bool:
        return all(m.synced for m in self.models)


def status(
    manifest_path: Path = Path("models.yaml"),
    lock_path: Path | None = None,
    store_home: Path | None = None,
    *,
    fix: bool = False,
) -> StatusResult:
    """What is locked, and how much of it the store holds. Never touches the network.

    ``fix`` links the missing views of blobs the store holds (a sync stopped after storing the
    bytes) and writes nothing else.
    """
    lock_path, current = require_lock(manifest_path, lock_path)
    stale: tuple[str, ...] = ()
    if manifest_path.exists():
        stale = tuple(change.describe() for change in drift(load_manifest(manifest_path), current))
    choice = store_choice(manifest_path, store_home)
    store = Store(choice.path)
    models, linked = [], []
    for name, entry in sorted(current.models.items()):
        found = store.model_state(entry)
        if fix and not found.synced:
            linked += _link_present(store, entry, found)
            found = store.model_state(entry)
        present = [f.file for f in found.files if f.present]
        main = main_file(entry)
        view = None if main is None else store.view_path(entry, main)
        models.append(
            ModelStatus(
                name=name,
                state="present" if len(present) == len(entry.files) else "partial" if present else "missing",
                files=len(entry.files),
                present_files=len(present),
                size=sum(f.size for f in entry.files),
                present_bytes=sum(f.size for f in present),
                main=view if view is not None and view.exists() else None,
                sync_state=found.state,
                views_missing=found.views_missing,
                hint=None if found.synced else found.hint,
            )
        )
    return StatusResult(
        lock_path=lock_path,
        store=store.home,
        stale=stale,
        models=tuple(models),
        store_origin=choice.origin,
        store_overridden=choice.overridden,
        linked=tuple(linked),
    )


def _link_present(store: Store, entry: LockedModel, found: ModelState) -> list[Path]:
    """Link the missing views of present blobs; the main file last, as ``sync`` does."""
    main = main_file(entry)
    todo = [f for f in found.files if f.present and not f.linked]
    for file in sorted(todo, key=lambda f: f.file == main):
        store.link_view(file.view, file.file.sha256)
    return [file.view for file in todo]


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    corrupt: tuple[str, ...]
    """Files whose bytes no longer match the lock; removed from the store (blob and views)."""
    missing: tuple[str, ...]


def verify(
    manifest_path: Path = Path("models.yaml"), lock_path: Path | None = None, store_home: Path | None = None
) -> VerifyResult:
    """Re-hash every blob the lock references, whatever the stat records say.

    A corrupt blob is removed with its views, so llama.cpp cannot load it and the next ``sync``
    fetches it again; the result names it, and the CLI exits 3.
    """
    lock_path, current = require_lock(manifest_path, lock_path)
    store = store_for(manifest_path, store_home)
    seen: dict[str, bool] = {}
    corrupt, missing = [], []
    for entry in current.models.values():
        for file in entry.files:
            if file.sha256 not in seen:
                if not store.blob_path(file.sha256).exists():
                    seen[file.sha256] = False
                    missing.append(label(entry, file))
                    continue
                seen[file.sha256] = store.verify_blob(file.sha256, file.size)
                if not seen[file.sha256]:
                    corrupt.append(label(entry, file))
                    if store.writable:
                        store.discard_blob(file.sha256)
            if seen[file.sha256] is False and store.writable:
                with contextlib.suppress(FileNotFoundError):
                    store.view_path(entry, file).unlink()
    if corrupt and not store.writable:
        # Still an integrity failure (exit 3): that it cannot be removed is the second news.
        raise IntegrityError(
            f"{', '.join(corrupt)} no longer match the lock, and the store {store.home} is read-only, "
            "so they stay in it",
            hint="do not serve from this store; run 'alex-models verify' where it is writable "
            "(it removes them), then 'alex-models sync'",
        )
    return VerifyResult(checked=len(seen), corrupt=tuple(corrupt), missing=tuple(missing))


def model_path(
    name: str,
    manifest_path: Path = Path("models.yaml"),
    lock_path: Path | None = None,
    store_home: Path | None = None,
) -> Path:
    """The view path of a model's main file (the first shard of a split model), for scripts."""
    lock_path, current = require_lock(manifest_path, lock_path)
    entry = current.models.get(name)
    if entry is None:
        raise UserError(
            f"no model named {name!r} in {lock_path}",
            hint=f"locked models: {', '.join(sorted(current.models)) or 'none'}",
        )
    main = main_file(entry)
    if main is None:
        raise UserError(f"model {name!r} has no model file (only {', '.join(f.path for f in entry.files)})")
    store = store_for(manifest_path, store_home)
    found = store.model_state(entry)
    if not found.synced:
        raise UserError(f"model {name!r} is not synced into {store.home}", hint=found.hint)
    return store.view_path(entry, main)


# -- gc ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    """One file gc removes (or, with ``dry_run``, would remove)."""

    path: Path
    size: int


@dataclass(frozen=True)
class GcResult:
    blobs: tuple[Removal, ...]
    partials: tuple[Removal, ...]
    """Partial downloads; ``size`` is the disk space they take."""
    views: tuple[Removal, ...]
    """Views; ``size`` is the file's (a hard link frees nothing while its blob stays)."""
    kept_locks: tuple[str, ...]
    forgotten_pulls: tuple[Path, ...]
    """The pull locks ``forget_pulls`` removed (or would remove)."""
    dry_run: bool

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
                view.unlink(missing_ok=True)
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


# -- pull ------------------------------------------------------------------------------------------------


def pull(
    repo: str,
    file: str,
    *,
    revision: str = "main",
    directory: Path | None = None,
    sha256: str | None = None,
    store_home: Path | None = None,
    remote: Remote | None = None,
    progress: Progress | None = None,
    client: httpx2.Client | None = None,
) -> Path:
    """Download one file (every shard, for the first shard of a split model) without a manifest.

    The bytes go through the store and the same verified downloader as ``sync``; ``sha256`` pins
    the expected content. Returns the view path, or the path placed in ``directory``.
    """
    from alex_models.hub import HubRemote  # noqa: PLC0415

    safe_relpath(file, what="file to pull")  # refused before any request, as in a manifest
    settings = Settings.from_env()
    owned = remote is None
    source = remote or HubRemote(
        settings.endpoint,
        offline=settings.offline,
        offline_hint="pull needs the network: unset HF_HUB_OFFLINE to pull",
    )
    try:
        snapshot = source.snapshot(repo, revision)
        picked = select(f"{repo}/{file}", ModelInput(repo=repo, revision=revision, file=file), snapshot)
        files = []
        for remote_file, role in picked:
            digest = remote_file.sha256 or source.file_sha256(
                repo, snapshot.commit, remote_file.path, remote_file.size
            )
            files.append(LockedFile(path=remote_file.path, role=role, size=remote_file.size, sha256=digest))
    finally:
        if owned and isinstance(source, HubRemote):
            source.close()
    requested = next(f for f in files if f.path == file)
    if sha256 is not None and requested.sha256 != sha256.lower():
        raise IntegrityError(
            f"{repo}/{file} at {snapshot.commit[:12]} has SHA256 {requested.sha256}, not {sha256}",
            hint="check --sha256, or the revision",
        )
    entry = LockedModel(
        input=ModelInput(repo=repo, revision=revision, file=file),
        source="hf",
        repo=repo,
        revision=revision,
        commit=snapshot.commit,
        files=files,
    )
    single = Lock(version=1, models={"pull": entry})
    store = store_for(None, store_home).init()
    if store.writable:  # a read-only store serves what it holds; nothing there can be collected
        # Registered before the download, as sync registers its lock: gc keeps what pull fetched (and
        # a partial download of it) until the user deletes this lock or runs 'gc --forget-pulls'.
        pull_lock = store.pull_lock_path(repo, file)
        atomic_write(pull_lock, dumps(single).encode())
        store.register_lock(pull_lock)
    wanted = download_jobs(single, ["pull"], settings.endpoint)
    missing = with_token(
        # No model to name: no lock to fix either, if the Hub's answers contradict each other.
        [replace(job, model=None) for job in wanted.values() if not store.has_blob(job.sha256, job.size)],
        settings.endpoint,
    )
    check_space(store, missing)
    if missing:
        download_missing(
            store,
            missing,
            progress or NoProgress(),
            jobs=4,
            client=client,
            options=None,
            checks=gguf_checks(single, ["pull"]),
            command="pull",
        )
    synced = link_views(store, "pull", entry)
    view = store.view_path(entry, requested)
    if directory is None:
        return view
    return _place(synced.views, store.view_path(entry, requested), directory)


def _place(views: tuple[Path, ...], requested: Path, directory: Path) -> Path:
    """Put the pulled files in ``directory``: hard links where possible, copies otherwise."""
    directory.mkdir(parents=True, exist_ok=True)
    for view in views:
        target = directory / view.name
        if not (target.exists() and target.samefile(view)):
            link_atomically(target, view, fallback="copy")
    return directory / requested.name
