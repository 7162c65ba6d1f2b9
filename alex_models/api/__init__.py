"""The use cases, as a Python API: what each CLI command does, minus the rendering.

Each function composes the pure parts (manifest, lock, resolver) with the I/O parts (remote,
store, downloader) and returns a frozen result; the CLI only renders it.
"""

from alex_models.api.emit import Emitted, emit, emit_targets
from alex_models.api.probe import ProbeReport, ProbeResult, probe
from alex_models.api.project import AddResult, LockResult, add, default_lock_path, init, lock, read_lock
from alex_models.api.store import GcResult, ModelStatus, VerifyResult, gc, model_path, pull, status, verify
from alex_models.api.sync import SyncedModel, SyncResult, sync

__all__ = [
    "AddResult",
    "Emitted",
    "GcResult",
    "LockResult",
    "ModelStatus",
    "ProbeReport",
    "ProbeResult",
    "SyncResult",
    "SyncedModel",
    "VerifyResult",
    "add",
    "default_lock_path",
    "emit",
    "emit_targets",
    "gc",
    "init",
    "lock",
    "model_path",
    "probe",
    "pull",
    "read_lock",
    "status",
    "sync",
    "verify",
]
