"""Use cases on the store besides ``sync``: ``status``, ``verify``, ``path``, ``gc``, ``pull``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import httpx2
from filelock import Timeout

from alex_models._fs import link_atomically, safe_relpath
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
    store_for,
    with_token,
)
from alex_models.download import NoProgress, Progress
from alex_models.errors import IntegrityError, UserError
from alex_models.lock import Lock, LockedFile, LockedModel, drift
from alex_models.manifest import ModelInput, load_manifest
from alex_models.remote import Remote
from alex_models.resolve import select
from alex_models.settings import Settings
from alex_models.store import Store

_LISTED_AT_MOST = 8


# -- status, verify, path -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    name: str
    state: Literal["present", "partial", "missing"]
    files: int
    present_files: int
    size: int
    present_bytes: int
    main: Path | None


@dataclass(frozen=True)
class StatusResult:
    lock_path: Path
    store: Path
    stale: tuple[str, ...]
    """The lock's drift from the manifest, described; empty when fresh (or with no manifest)."""
    models: tuple[ModelStatus, ...]


def status(
    manifest_path: Path = Path("models.yaml"), lock_path: Path | None = None, store_home: Path | None = None
) -> StatusResult:
    """What is locked, and how much of it the store holds. Never touches the network."""
    lock_path, current = require_lock(manifest_path, lock_path)
    stale: tuple[str, ...] = ()
    if manifest_path.exists():
        stale = tuple(change.describe() for change in drift(load_manifest(manifest_path), current))
    store = Store(store_home) if store_home else store_for()
    models = []
    for name, entry in sorted(current.models.items()):
        present = [f for f in entry.files if store.has_blob(f.sha256, f.size)]
        state: Literal["present", "partial", "missing"] = (
            "present" if len(present) == len(entry.files) else "partial" if present else "missing"
        )
        main = main_file(entry)
        view = None if main is None else store.view_path(entry, main)
        models.append(
            ModelStatus(
                name=name,
                state=state,
                files=len(entry.files),
                present_files=len(present),
                size=sum(f.size for f in entry.files),
                present_bytes=sum(f.size for f in present),
                main=view if view is not None and view.exists() else None,
            )
        )
    return StatusResult(lock_path=lock_path, store=store.home, stale=stale, models=tuple(models))


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
    store = Store(store_home) if store_home else store_for()
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
                    store.discard_blob(file.sha256)
            if seen[file.sha256] is False:
                with contextlib.suppress(FileNotFoundError):
                    store.view_path(entry, file).unlink()
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
    store = Store(store_home) if store_home else store_for()
    view = store.view_path(entry, main)
    if not view.exists():
        raise UserError(f"model {name!r} is not synced into {store.home}", hint="run 'alex-models sync'")
    return view


# -- gc ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GcResult:
    removed_blobs: int
    removed_partials: int
    removed_views: int
    bytes_freed: int
    kept_locks: tuple[str, ...]
    dry_run: bool


def gc(*, dry_run: bool = False, store_home: Path | None = None) -> GcResult:
    """Remove blobs, views and partial downloads that no registered, still existing lock references.

    A blob or partial whose file lock is held (a ``sync`` is fetching it) is never touched.
    """
    store = (Store(store_home) if store_home else store_for()).init()
    keep_blobs, keep_views, live_locks = _referenced(store)
    freed = blobs = partials = views = 0
    for blob in list(store.blobs()):
        if blob.name not in keep_blobs and _removable(store, blob.name):
            freed += blob.stat().st_size
            blobs += 1
            if not dry_run:
                store.discard_blob(blob.name)
    for partial in list((store.home / "tmp").glob("*.part")):
        sha256 = partial.name.removesuffix(".part")
        if sha256 not in keep_blobs and _removable(store, sha256):
            freed += partial.stat().st_blocks * 512
            partials += 1
            if not dry_run:
                partial.unlink(missing_ok=True)
                store.progress_path(sha256).unlink(missing_ok=True)
    for view in [v for v in (store.home / "llama.cpp").rglob("*") if v.is_file() or v.is_symlink()]:
        if view not in keep_views:
            views += 1
            if not dry_run:
                view.unlink(missing_ok=True)
    if not dry_run:
        _remove_empty_dirs(store.home / "llama.cpp")
        store.set_registered_locks(live_locks)
    return GcResult(blobs, partials, views, freed, tuple(sorted(live_locks)), dry_run)


def _referenced(store: Store) -> tuple[set[str], set[Path], list[str]]:
    """Blobs and views the registered locks still pin, and those locks."""
    keep_blobs: set[str] = set()
    keep_views: set[Path] = set()
    live_locks = []
    for lock_file in store.registered_locks():
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
    """Not held by a running sync. The lock is taken and released at once: gc never waits."""
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
    source = remote or HubRemote(settings.endpoint, offline=settings.offline)
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
    store = (Store(store_home) if store_home else store_for()).init()
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
