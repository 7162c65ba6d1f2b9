"""Where a command finds its project: the lock beside the manifest, and the store it uses."""

from __future__ import annotations

from pathlib import Path

from alex_models.errors import UserError
from alex_models.lock import Lock, loads
from alex_models.manifest import load_manifest, manifest_not_found
from alex_models.settings import StoreHome, store_home
from alex_models.store import Store


def default_lock_path(manifest_path: Path) -> Path:
    """Where a manifest's lock lives: ``models.lock`` beside it."""
    return manifest_path.with_name("models.lock")


def read_lock(lock_path: Path) -> Lock | None:
    """The lock at ``lock_path``, fully validated, or None if there is none yet."""
    try:
        text = lock_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return loads(text, str(lock_path))


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
