"""The use cases, as a Python API: what each CLI command does, minus the rendering.

Each function composes the pure parts (manifest, lock, resolver) with the I/O parts (remote,
store) and returns a frozen result; the CLI only renders it.
"""

from alex_models.api.project import AddResult, LockResult, add, default_lock_path, init, lock, read_lock

__all__ = [
    "AddResult",
    "LockResult",
    "add",
    "default_lock_path",
    "init",
    "lock",
    "read_lock",
]
