"""This Linux Python, made to lack what CPython lacks on macOS or on Windows.

The package decides what to call from what ``os`` has (``alex_models._platform``), so removing a
function here sends it down the path the other platform takes. What each platform lacks, from
CPython's documentation ("Availability" of each function):

- macOS: ``os.fdatasync``, ``os.posix_fallocate``, ``os.posix_fadvise`` and other Linux-only calls;
  ``select.epoll``. It has ``fcntl.F_FULLFSYNC``, which flushes the drive's cache: here that
  command is answered by ``fsync`` and logged, so a test can see it was used.
- Windows: besides those, ``os.pread``/``pwrite``, ``os.sendfile``, ``os.sync`` (not ``os.statvfs``:
  ``shutil.disk_usage`` is built on it here and on ``nt`` there, and our code calls only that).
  It refuses a symlink without a privilege most users lack (WinError 1314), opening a directory,
  deleting or replacing a read-only file, and renaming onto an existing name; and the first rename
  of each new file meets a sharing violation (WinError 32), as when a virus scanner holds it for a
  moment: each refusal is reproduced and logged.

Not reproduced: Windows's refusal to rename or delete a file another handle has open, its path
and drive-letter rules, signals other than SIGINT, and the real effect of ``F_FULLFSYNC``. Only
what our code and the standard library functions it calls would meet is changed: third-party
packages branch on ``sys.platform``, which stays ``linux``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import stat
from collections.abc import Callable
from typing import Any

LINUX_ONLY = (
    "fdatasync", "posix_fallocate", "posix_fadvise", "pipe2", "sched_getaffinity", "sched_setaffinity",
    "memfd_create", "eventfd", "splice", "copy_file_range", "getxattr", "setxattr", "listxattr",
    "removexattr", "getrandom", "O_DIRECT", "O_NOATIME", "O_PATH", "O_TMPFILE",
)  # fmt: skip
WINDOWS_ALSO_LACKS = ("pread", "pwrite", "preadv", "pwritev", "sendfile", "sync")
F_FULLFSYNC = 51  # its value on macOS; Linux has no command 51


def apply(platform: str) -> None:
    """Make this Python lack what ``platform`` ("macos" or "windows") lacks; "exfat" keeps Linux's
    Python but refuses hard links and symlinks everywhere, as Linux's exFAT and FAT drivers do."""
    if platform == "exfat":
        _no_links()
        return
    if platform not in ("macos", "windows"):
        raise SystemExit(f"ALEX_MODELS_SIMULATE={platform!r}: expected 'macos', 'windows' or 'exfat'")
    for name in LINUX_ONLY + (WINDOWS_ALSO_LACKS if platform == "windows" else ()):
        if hasattr(os, name):
            delattr(os, name)
    if hasattr(select, "epoll"):
        delattr(select, "epoll")
    if platform == "macos":
        _full_fsync()
    else:
        _windows_refusals()


def log(event: str) -> None:
    """Append ``event`` to the file ``ALEX_MODELS_SIMULATE_LOG`` names, if it names one."""
    path = os.environ.get("ALEX_MODELS_SIMULATE_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as out:  # noqa: PTH123 - os.open may be wrapped
            out.write(event + "\n")


def _full_fsync() -> None:
    real_fcntl = fcntl.fcntl

    def fcntl_(fd: Any, cmd: int, arg: Any = 0) -> Any:
        if cmd == F_FULLFSYNC:
            os.fsync(fd)
            log("F_FULLFSYNC")
            return 0
        return real_fcntl(fd, cmd, arg)

    # setattr: typeshed knows F_FULLFSYNC only on macOS, and the replacement's signature is looser.
    setattr(fcntl, "F_FULLFSYNC", F_FULLFSYNC)  # noqa: B010
    setattr(fcntl, "fcntl", fcntl_)  # noqa: B010


def _windows_refusals() -> None:
    real_open, real_unlink, real_rename, real_replace = os.open, os.unlink, os.rename, os.replace

    def symlink(*args: Any, **kwargs: Any) -> None:
        log("symlink refused")
        refused = OSError(errno.EINVAL, "[WinError 1314] A required privilege is not held by the client")
        refused.winerror = 1314  # type: ignore[attr-defined]
        raise refused

    def open_(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is None and not isinstance(path, int) and os.path.isdir(path):  # noqa: PTH112 - str, bytes or PathLike
            log("directory open refused")
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    def unlink(path: Any, *, dir_fd: int | None = None) -> None:
        if dir_fd is None and _read_only_file(path):
            log("read-only delete refused")
            raise PermissionError(errno.EACCES, "Access is denied", path)
        real_unlink(path, dir_fd=dir_fd)

    def rename(src: Any, dst: Any, **kwargs: Any) -> None:
        if os.path.lexists(dst):
            log("rename onto an existing name refused")
            raise FileExistsError(errno.EEXIST, "Cannot create a file when that file already exists", dst)
        real_rename(src, dst, **kwargs)

    scanned: set[str] = set()

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if os.fspath(src) not in scanned:  # a virus scanner opens each new file for a moment
            scanned.add(os.fspath(src))
            log("sharing violation")
            held = PermissionError(
                errno.EACCES, "The process cannot access the file because it is being used"
            )
            held.winerror = 32  # type: ignore[attr-defined]
            raise held
        if _read_only_file(dst):
            log("replace of a read-only file refused")
            raise PermissionError(errno.EACCES, "Access is denied", dst)
        real_replace(src, dst, **kwargs)

    wrapped: dict[str, Callable[..., Any]] = {
        "symlink": symlink, "open": open_, "unlink": unlink, "remove": unlink, "rename": rename,
        "replace": replace,
    }  # fmt: skip
    for name, function in wrapped.items():
        setattr(os, name, function)


def _no_links() -> None:
    def refuse(kind: str) -> Callable[..., None]:
        def link(*args: Any, **kwargs: Any) -> None:
            log(f"{kind} refused")
            raise PermissionError(errno.EPERM, "Operation not permitted")

        return link

    os.link = refuse("hard link")
    os.symlink = refuse("symlink")


def _read_only_file(path: Any) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and not mode & stat.S_IWUSR
