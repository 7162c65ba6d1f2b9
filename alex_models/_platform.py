"""What differs between Linux, macOS and Windows, in one place.

Durable flushes, preallocation, positional reads and writes, links, ``sendfile``, removing read-only
files and trees, the signals that stop a command, and waiting so that Ctrl-C gets through. Every choice is
made from what this Python has (``hasattr``), not from the platform's name, so a Python that lacks
a function takes the same path as the platform that lacks it (the tests run the CLI under Pythons
with macOS's and Windows's gaps). Nothing else in the package calls these ``os`` functions.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LinkKind = Literal["hard", "symbolic", "copy"]

_BINARY = getattr(os, "O_BINARY", 0)
"""Windows opens low-level files in text mode (newlines rewritten) unless told otherwise."""

INTERRUPT_POLL = 0.25
"""Seconds between checks for Ctrl-C while the main thread waits. On Windows a lock or event wait
without a timeout cannot be interrupted, so every wait in the main thread is a loop of short ones."""


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """``os.open`` in binary mode everywhere."""
    return os.open(path, flags | _BINARY, mode)


def flush(fd: int, *, data_only: bool = False) -> None:
    """Make the bytes written to ``fd`` durable (and its size and times, unless ``data_only``).

    macOS's ``fsync`` leaves the data in the drive's cache; ``F_FULLFSYNC`` is what flushes it there,
    and where a filesystem refuses it (some network shares) ``fsync`` is the best left. Linux has
    ``fdatasync``, which skips the metadata a resume record does not need.
    """
    full_fsync = getattr(fcntl, "F_FULLFSYNC", None)
    if full_fsync is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, full_fsync)
            return
    if data_only and hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)


@functools.cache
def boot_id() -> str | None:
    """A name for this boot of the machine, or None where the system gives none.

    Bytes written but not flushed live in the page cache: a killed process leaves them for the next
    one, and only a crash of the machine (a power loss) drops them, and the machine then boots anew.
    Linux names each boot; elsewhere None, and only flushed bytes are trusted after any crash.
    """
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def flush_directory(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable, where the platform lets us.

    Windows cannot open a directory to flush it (NTFS journals the rename itself): nothing to do.
    """
    try:
        fd = os.open(directory, os.O_RDONLY | _BINARY)
    except PermissionError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF):  # filesystems that cannot flush a directory
            raise
    finally:
        os.close(fd)


def preallocate(fd: int, size: int) -> None:
    """Give the file ``size`` bytes now: reserved on disk where the platform can (Linux's
    ``posix_fallocate``), else only extended, so a full disk is caught by the free-space check."""
    if os.fstat(fd).st_size != size:
        os.ftruncate(fd, size)
    if hasattr(os, "posix_fallocate") and size:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # filesystems without fallocate
                raise


# Without pread/pwrite (Windows), a read or write at a position is a seek then a read or write on
# the descriptor's one shared offset: this lock keeps each pair whole across threads.
_SEEK_LOCK = threading.Lock()


def write_at(fd: int, data: bytes | bytearray | memoryview, position: int) -> None:
    """Write all of ``data`` at ``position``; threads may write other positions at the same time."""
    view = memoryview(data)
    if hasattr(os, "pwrite"):
        while view:
            written = os.pwrite(fd, view, position)
            view = view[written:]
            position += written
        return
    with _SEEK_LOCK:
        os.lseek(fd, position, os.SEEK_SET)
        while view:
            view = view[os.write(fd, view) :]


def read_at(fd: int, count: int, position: int) -> bytes:
    """Up to ``count`` bytes at ``position`` (fewer at the end of the file)."""
    if hasattr(os, "pread"):
        return os.pread(fd, count, position)
    with _SEEK_LOCK:
        os.lseek(fd, position, os.SEEK_SET)
        return os.read(fd, count)


def send_file(connection: socket.socket, fd: int, position: int, count: int) -> int:
    """Send up to ``count`` bytes of ``fd`` from ``position``; how many went out. ``sendfile(2)``
    where there is one; elsewhere a read and a send."""
    if hasattr(os, "sendfile"):
        return int(os.sendfile(connection.fileno(), fd, position, count))
    chunk = read_at(fd, min(count, 1024 * 1024), position)
    if not chunk:
        return 0
    connection.sendall(chunk)
    return len(chunk)


def make_link(where: Path, target: Path, kinds: Sequence[LinkKind]) -> LinkKind:
    """Create ``where`` as the first of ``kinds`` the filesystem allows; which one it made.

    A symlink's text is ``target`` as given (relative to ``where``'s folder, if relative); a hard
    link or a copy reads the file that text names. exFAT has neither kind of link, and Windows
    refuses symlinks without a privilege most users lack: those get the next kind, at last a copy.
    """
    source = target if target.is_absolute() else where.parent / target
    for kind in kinds[:-1]:
        try:
            _link(where, target, source, kind)
        except (FileExistsError, FileNotFoundError):
            raise
        except OSError:
            continue
        return kind
    _link(where, target, source, kinds[-1])
    return kinds[-1]


def _link(where: Path, target: Path, source: Path, kind: LinkKind) -> None:
    if kind == "hard":
        os.link(source, where)
    elif kind == "symbolic":
        where.symlink_to(target)
    else:
        shutil.copyfile(source, where)


def place_if_absent(temporary: Path, final: Path) -> bool:
    """Give ``temporary`` the name ``final`` only if nothing has it yet; False if something did.

    A hard link is the one way to do that atomically; where the filesystem has none, the name is
    checked and then renamed to, which two writers of the same verified bytes can both pass
    harmlessly (Windows's rename refuses an existing name itself).
    """
    try:
        os.link(temporary, final)
    except FileExistsError:
        return False
    except OSError:
        if os.path.lexists(final):
            return False
        try:
            temporary.rename(final)
        except FileExistsError:
            return False
    return True


def remove(path: Path) -> None:
    """Delete the file ``path`` if it is there, read-only or not (Windows refuses to delete a
    read-only file; the store's blobs are read-only)."""
    try:
        path.unlink(missing_ok=True)
    except PermissionError:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or mode & stat.S_IWUSR:
            raise
        path.chmod(mode | stat.S_IWUSR)
        path.unlink()


def remove_tree(path: Path) -> None:
    """Delete ``path`` and everything under it, read-only files too (Windows refuses to delete
    those, and the store's blobs are read-only); what still cannot be deleted is left."""

    def writable_then_again(function: Callable[[str], object], name: str, _: object) -> None:
        with contextlib.suppress(OSError):
            if not Path(name).is_symlink():
                Path(name).chmod(stat.S_IRWXU)
            function(name)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=writable_then_again)
    else:
        shutil.rmtree(path, onerror=writable_then_again)


def replace(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target``, replacing a read-only file there (Windows refuses to), and
    trying again for a few seconds while another program holds one of them (see ``_HELD``)."""
    for pause in (*_HELD_PAUSES, None):
        try:
            _replace_writable(source, target)
        except PermissionError as exc:
            if pause is None or getattr(exc, "winerror", None) not in _HELD:
                raise
            time.sleep(pause)
        else:
            return


def _replace_writable(source: Path, target: Path) -> None:
    try:
        source.replace(target)
    except PermissionError as exc:
        if getattr(exc, "winerror", None) in _HELD or not target.is_file() or target.is_symlink():
            raise
        target.chmod(target.lstat().st_mode | stat.S_IWUSR)
        source.replace(target)


_HELD = (32, 33)
"""Windows's sharing and lock violations: another program has the file open. A virus scanner
opens each new file for a moment, just as a download renames it into place."""
_HELD_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)


def termination_signals() -> tuple[signal.Signals, ...]:
    """The signals a service manager or a console sends to stop a command, besides Ctrl-C's
    SIGINT: SIGTERM, and Ctrl-Break's SIGBREAK on Windows."""
    names = ("SIGTERM", "SIGBREAK")
    return tuple(getattr(signal, name) for name in names if hasattr(signal, name))


def wait_until_interrupted() -> None:
    """Block the main thread until a signal raises in it: short sleeps, which Ctrl-C interrupts
    on every platform."""
    while True:
        time.sleep(INTERRUPT_POLL * 40)


def return_freed_buffers() -> None:
    """Large buffers freed from now on go back to the system at once (glibc; elsewhere nothing).

    glibc raises its mmap threshold to the size of the first large buffer freed, and keeps later
    ones in per-thread arenas: four parallel uploads in 8 MiB parts then peaked at 264 MB, 97 MB
    with the threshold fixed at 1 MiB. Each buffer then costs fresh pages, so only uploads ask.
    """
    import ctypes  # noqa: PLC0415 - only push needs it

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):  # not glibc: macOS, Windows
        return
    m_mmap_threshold = -3
    mallopt(m_mmap_threshold, 1024 * 1024)


def new_process_group() -> dict[str, Any]:
    """``subprocess.Popen`` arguments that start a child in its own group, so a Ctrl-C at the
    console reaches only us and we stop the child in order."""
    import subprocess  # noqa: PLC0415 - only the demo starts a process; keep start-up light

    flag = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", None)
    if flag is not None:
        return {"creationflags": flag}
    return {"start_new_session": True}
