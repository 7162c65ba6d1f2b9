"""The use cases, as a Python API: what each CLI command does, minus the rendering.

Each function composes the pure parts (manifest, lock, resolver) with the I/O parts (remote,
store, downloader) and returns a frozen result; the CLI only renders it. The modules behind it are
private (``_sync``, ``_status``…): import from here, so ``alex_models.api.sync`` is the function.

A name's module is imported when the name is first used (PEP 562), not with the package: a
command that only reads the store (``status``, ``path``, a sync with nothing to fetch) then never
loads what the others need (the downloader, the HTTP stack, huggingface_hub).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and readers see; __getattr__ below loads the same at run time
    from alex_models.api._bundle import BundleResult as BundleResult
    from alex_models.api._bundle import ImportResult as ImportResult
    from alex_models.api._bundle import bundle_create as bundle_create
    from alex_models.api._bundle import bundle_import as bundle_import
    from alex_models.api._context import default_lock_path as default_lock_path
    from alex_models.api._context import read_lock as read_lock
    from alex_models.api._demo import DemoResult as DemoResult
    from alex_models.api._demo import demo as demo
    from alex_models.api._emit import Emitted as Emitted
    from alex_models.api._emit import default_shell as default_shell
    from alex_models.api._emit import emit as emit
    from alex_models.api._emit import emit_targets as emit_targets
    from alex_models.api._gc import GcResult as GcResult
    from alex_models.api._gc import Removal as Removal
    from alex_models.api._gc import gc as gc
    from alex_models.api._materialize import SyncedModel as SyncedModel
    from alex_models.api._outdated import OutdatedModel as OutdatedModel
    from alex_models.api._outdated import OutdatedResult as OutdatedResult
    from alex_models.api._outdated import outdated as outdated
    from alex_models.api._probe import ProbeReport as ProbeReport
    from alex_models.api._probe import ProbeResult as ProbeResult
    from alex_models.api._probe import probe as probe
    from alex_models.api._project import AddResult as AddResult
    from alex_models.api._project import LockResult as LockResult
    from alex_models.api._project import add as add
    from alex_models.api._project import init as init
    from alex_models.api._project import lock as lock
    from alex_models.api._pull import pull as pull
    from alex_models.api._push import PushResult as PushResult
    from alex_models.api._push import RemoteBlob as RemoteBlob
    from alex_models.api._push import RemoteModel as RemoteModel
    from alex_models.api._push import RemoteStatusResult as RemoteStatusResult
    from alex_models.api._push import push as push
    from alex_models.api._push import remote_status as remote_status
    from alex_models.api._status import ModelStatus as ModelStatus
    from alex_models.api._status import StatusResult as StatusResult
    from alex_models.api._status import VerifyResult as VerifyResult
    from alex_models.api._status import model_path as model_path
    from alex_models.api._status import status as status
    from alex_models.api._status import verify as verify
    from alex_models.api._sync import SyncOptions as SyncOptions
    from alex_models.api._sync import SyncResult as SyncResult
    from alex_models.api._sync import sync as sync

_MODULES = {
    "_bundle": ("BundleResult", "ImportResult", "bundle_create", "bundle_import"),
    "_context": ("default_lock_path", "read_lock"),
    "_demo": ("DemoResult", "demo"),
    "_emit": ("Emitted", "default_shell", "emit", "emit_targets"),
    "_gc": ("GcResult", "Removal", "gc"),
    "_materialize": ("SyncedModel",),
    "_outdated": ("OutdatedModel", "OutdatedResult", "outdated"),
    "_probe": ("ProbeReport", "ProbeResult", "probe"),
    "_project": ("AddResult", "LockResult", "add", "init", "lock"),
    "_pull": ("pull",),
    "_push": ("PushResult", "RemoteBlob", "RemoteModel", "RemoteStatusResult", "push", "remote_status"),
    "_status": ("ModelStatus", "StatusResult", "VerifyResult", "model_path", "status", "verify"),
    "_sync": ("SyncOptions", "SyncResult", "sync"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_HOME)  # noqa: PLE0605 - built from _MODULES; the TYPE_CHECKING block spells it out


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found once: later uses are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
