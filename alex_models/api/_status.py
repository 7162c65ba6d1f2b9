"""Use cases that read the store against the lock: ``status`` (and ``--fix``), ``verify``, ``path``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alex_models.api._context import require_lock, store_choice, store_for
from alex_models.api._materialize import label
from alex_models.errors import IntegrityError, UserError
from alex_models.lock import LockedModel, drift
from alex_models.manifest import load_manifest
from alex_models.settings import StoreOrigin
from alex_models.store import ModelState, Store


@dataclass(frozen=True)
class ModelStatus:
    """One locked model against the store: which files are there, and whether llama.cpp can load it."""

    name: str
    state: Literal["present", "partial", "missing"]
    """How many of its blobs the store holds (all, some, none); ``sync_state`` says whether it is usable."""
    files: int
    """Files the lock pins for it."""
    present_files: int
    """Of those, verified blobs in the store."""
    size: int
    """Bytes the lock pins for it."""
    present_bytes: int
    main: Path | None
    """The view of its main file, when that is in place."""
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
    """What ``status`` found: the lock's freshness and every locked model against the store."""

    lock_path: Path
    store: Path
    """The store read (see ``store_origin`` for why this one)."""
    stale: tuple[str, ...]
    """The lock's drift from the manifest, described; empty when fresh (or with no manifest)."""
    models: tuple[ModelStatus, ...]
    store_origin: StoreOrigin = "given"
    """What chose the store: given, ``ALEX_MODELS_HOME``, the manifest's ``store:``, or the default."""
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
        main = entry.main_file
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
    main = entry.main_file
    todo = [f for f in found.files if f.present and not f.linked]
    for file in sorted(todo, key=lambda f: f.file == main):
        store.link_view(file.view, file.file.sha256)
    return [file.view for file in todo]


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` re-hashed, and what no longer matches the lock or is gone."""

    checked: int
    """Distinct blobs re-hashed."""
    corrupt: tuple[str, ...]
    """Files whose bytes no longer match the lock; removed from the store (blob and views)."""
    missing: tuple[str, ...]
    """Locked files with no blob in the store."""


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
            if seen[file.sha256] and store.writable:
                view = store.view_path(entry, file)
                if not store.verify_view(view, file.sha256):  # a copy, where links are impossible
                    corrupt.append(f"{label(entry, file)} (its copy {view})")
            if seen[file.sha256] is False and store.writable:
                store.remove_view(store.view_path(entry, file))
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
    main = entry.main_file
    if main is None:
        raise UserError(f"model {name!r} has no model file (only {', '.join(f.path for f in entry.files)})")
    store = store_for(manifest_path, store_home)
    found = store.model_state(entry)
    if not found.synced:
        raise UserError(f"model {name!r} is not synced into {store.home}", hint=found.hint)
    return store.view_path(entry, main)
