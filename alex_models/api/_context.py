"""Where a command finds its project: the lock beside the manifest, and the store it uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from alex_models.errors import UserError
from alex_models.lock import Lock, load_bytes
from alex_models.manifest import load_manifest, manifest_not_found
from alex_models.settings import StoreHome, store_home
from alex_models.store import Store

if TYPE_CHECKING:
    from alex_models.remotes import BlobRemote


def default_lock_path(manifest_path: Path) -> Path:
    """Where a manifest's lock lives: ``models.lock`` beside it."""
    return manifest_path.with_name("models.lock")


def read_lock(lock_path: Path) -> Lock | None:
    """The lock at ``lock_path``, fully validated, or None if there is none yet."""
    try:
        data = lock_path.read_bytes()
    except FileNotFoundError:
        return None
    return load_bytes(data, str(lock_path))


def require_lock(manifest_path: Path, lock_path: Path | None) -> tuple[Path, Lock]:
    """The lock beside the manifest (or at ``lock_path``), which must exist."""
    lock_path = lock_path or default_lock_path(manifest_path)
    current = read_lock(lock_path)
    if current is None:
        if not manifest_path.exists():  # a folder with neither file: the manifest is what to fix first
            raise manifest_not_found(manifest_path)
        raise UserError(f"{lock_path} does not exist", hint="run 'alex-models lock'")
    return lock_path, current


def store_for(manifest_path: Path | None = None, home: Path | None = None) -> Store:
    """The store a command reads and writes: ``home`` if the caller gives one, else as
    ``store_choice`` decides for this manifest."""
    return Store(store_choice(manifest_path, home).path)


def store_choice(manifest_path: Path | None = None, home: Path | None = None) -> StoreHome:
    """Which store, and why: ``home``, else ``ALEX_MODELS_HOME``, else the manifest's ``store:``
    (relative to the manifest's folder), else the default. The one place that decides it."""
    if home is not None:
        return StoreHome(home, "given")
    declared = None
    if manifest_path is not None and manifest_path.exists():
        store = load_manifest(manifest_path).store
        declared = None if store is None else manifest_relative(store, manifest_path).absolute()
    return store_home(declared)


def manifest_relative(path: str, manifest_path: Path) -> Path:
    """A path the manifest names (a store, an emit target): ``~`` expanded, relative to its folder."""
    expanded = Path(path).expanduser()
    return expanded if expanded.is_absolute() else manifest_path.parent / expanded


def select_models(current: Lock, only: Iterable[str]) -> list[str]:
    """The locked models a command works on: ``only`` (each must be locked), else all of them."""
    chosen = sorted(set(only)) or sorted(current.models)
    unknown = [name for name in chosen if name not in current.models]
    if unknown:
        raise UserError(
            f"no model named {', '.join(unknown)} in the lock",
            hint=f"locked models: {', '.join(sorted(current.models)) or 'none'}",
        )
    # A model's preset draft goes where the model goes.
    drafts = [name for name, entry in current.models.items() if entry.preset_of in chosen]
    return sorted({*chosen, *drafts})


def open_remotes(manifest_path: Path, given: Sequence[str | None]) -> list[BlobRemote]:
    """The remotes a command names, in order: each a URL, a name from the manifest's ``remotes:``,
    or None for the manifest's first. The one place that resolves ``--from NAME|URL``."""
    if not given:
        return []
    # Here, not at the top: the remotes bring the sources and the HTTP stack, which a command
    # naming no remote (a sync with nothing to fetch, status) never needs.
    from alex_models.remotes import open_remote, refuse_credentials  # noqa: PLC0415

    for choice in given:
        if choice is not None:
            refuse_credentials(choice)  # before the manifest is read or anything is asked
    named = load_manifest(manifest_path).remotes if manifest_path.exists() else {}
    urls = []
    for choice in given:
        if choice is not None and "://" in choice:
            urls.append(choice)
        elif choice is None and named:
            urls.append(next(iter(named.values())).url)
        elif choice is not None and choice in named:
            urls.append(named[choice].url)
        else:
            wanted = "no remote was given" if choice is None else f"no remote named {choice!r}"
            known = f"models.yaml names {', '.join(named)}" if named else f"{manifest_path} names none"
            raise UserError(
                f"{wanted}, and {known}",
                hint="give a URL (s3://bucket/prefix, file:///srv/models), "
                "or add it under 'remotes:' in models.yaml",
            )
    return [open_remote(url) for url in urls]
