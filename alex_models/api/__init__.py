"""The use cases, as a Python API: what each CLI command does, minus the rendering.

Each function composes the pure parts (manifest, lock, resolver) with the I/O parts (remote,
store, downloader) and returns a frozen result; the CLI only renders it. The modules behind it are
private (``_sync``, ``_status``…): import from here, so ``alex_models.api.sync`` is the function.
"""

from alex_models.api._bundle import BundleResult, ImportResult, bundle_create, bundle_import
from alex_models.api._context import default_lock_path, read_lock
from alex_models.api._demo import DemoResult, demo
from alex_models.api._emit import Emitted, default_shell, emit, emit_targets
from alex_models.api._gc import GcResult, Removal, gc
from alex_models.api._materialize import SyncedModel
from alex_models.api._outdated import OutdatedModel, OutdatedResult, outdated
from alex_models.api._probe import ProbeReport, ProbeResult, probe
from alex_models.api._project import AddResult, LockResult, add, init, lock
from alex_models.api._pull import pull
from alex_models.api._push import PushResult, RemoteBlob, RemoteModel, RemoteStatusResult, push, remote_status
from alex_models.api._status import ModelStatus, StatusResult, VerifyResult, model_path, status, verify
from alex_models.api._sync import SyncOptions, SyncResult, sync

__all__ = [
    "AddResult",
    "BundleResult",
    "DemoResult",
    "Emitted",
    "GcResult",
    "ImportResult",
    "LockResult",
    "ModelStatus",
    "OutdatedModel",
    "OutdatedResult",
    "ProbeReport",
    "ProbeResult",
    "PushResult",
    "RemoteBlob",
    "RemoteModel",
    "RemoteStatusResult",
    "Removal",
    "StatusResult",
    "SyncOptions",
    "SyncResult",
    "SyncedModel",
    "VerifyResult",
    "add",
    "bundle_create",
    "bundle_import",
    "default_lock_path",
    "default_shell",
    "demo",
    "emit",
    "emit_targets",
    "gc",
    "init",
    "lock",
    "model_path",
    "outdated",
    "probe",
    "pull",
    "push",
    "read_lock",
    "remote_status",
    "status",
    "sync",
    "verify",
]
