"""Filesystem helpers every module shares: atomic writes and the path-traversal guard."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Literal

from alex_models._platform import LinkKind, flush, flush_directory, make_link, remove, replace
from alex_models.errors import UserError

# A repo path segment longer than this cannot be a file name on common filesystems (NAME_MAX).
_MAX_SEGMENT_BYTES = 255


def safe_relpath(name: str, *, what: str = "path") -> PurePosixPath:
    """Return ``name`` as a relative POSIX path, or raise ``UserError`` if it could escape a directory.

    Remote file names become paths on disk, so they are untrusted: absolute paths, ``..``, ``.``,
    empty segments, backslashes, drive letters and NUL are all refused.
    """
    problem = relpath_problem(name)
    if problem is not None:
        raise UserError(
            f"refusing {what} {name!r}: {problem}", hint="use a relative path like 'dir/file.gguf'"
        )
    return PurePosixPath(name)


def relpath_problem(name: str) -> str | None:
    """Why ``name`` is not a safe relative POSIX path, or None if it is."""
    if not name:
        return "it is empty"
    if "\0" in name:
        return "it contains a NUL byte"
    if "\\" in name:
        return "it contains a backslash"
    if name.startswith("/"):
        return "it is absolute"
    if len(name) >= 2 and name[1] == ":":
        return "it starts with a drive letter"
    for segment in name.split("/"):
        if not segment:
            return "it has an empty segment"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
        if len(segment.encode()) > _MAX_SEGMENT_BYTES:
            return f"a segment is longer than {_MAX_SEGMENT_BYTES} bytes"
    return None


# A lock is used on every host: a name Windows cannot hold is refused everywhere, as a name that
# differs only in case is (the resolver says so), not found out on the first Windows host.
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {
    f"{kind}{n}" for kind in ("COM", "LPT") for n in range(1, 10)
}
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')


def portable_name_problem(name: str) -> str | None:
    """Why the relative path ``name`` cannot be a file on every host, or None (checked when a file
    is locked; ``relpath_problem`` first)."""
    for segment in name.split("/"):
        if problem := _windows_problem(segment):
            return problem
    return None


def _windows_problem(segment: str) -> str | None:
    if any(char in _WINDOWS_FORBIDDEN or ord(char) < 32 for char in segment):
        return f'{segment!r} has a character Windows does not allow in a file name (<>:"|?* or a control)'
    if segment.endswith((" ", ".")):
        return f"{segment!r} ends with a space or a dot, which Windows drops"
    if segment.split(".", maxsplit=1)[0].rstrip(" ").upper() in _WINDOWS_DEVICES:
        return f"{segment!r} is a device name on Windows"
    return None


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    The bytes go to a unique temporary file in the same directory, are fsynced, get ``mode``
    (mkstemp creates 0600), and replace ``path`` in one rename. ``durable=False`` skips both
    fsyncs: still whole for readers and after a killed process, but after a power loss ``path`` may
    hold the old bytes, the new ones or none.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            tmp_file.write(data)
            tmp_file.flush()
            if durable:
                flush(tmp_file.fileno())
        tmp.chmod(mode)
        replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        flush_directory(path.parent)


_HASH_CHUNK = 4 * 1024 * 1024


def sha256_file(path: Path) -> str:
    """SHA256 of a file's content, read in large chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def link_atomically(
    where: Path,
    target: Path,
    *,
    kind: Literal["hard", "symbolic"] = "hard",
    fallback: Literal["symlink", "copy"] = "symlink",
) -> LinkKind:
    """Make ``where`` a link to ``target``, replacing whatever was there in one rename; which kind.

    A hard link that the filesystem refuses (another device, exFAT) becomes ``fallback``: a symlink
    to the absolute target, or a copy. ``kind="symbolic"`` links ``target`` as given (it may be
    relative), or hard-links, or copies where symlinks are refused (Windows without the privilege).
    """
    kinds: tuple[LinkKind, ...]
    if kind == "symbolic":
        kinds = ("symbolic", "hard", "copy")
    else:
        kinds = ("hard", "copy") if fallback == "copy" else ("hard", "symbolic", "copy")
        target = target.absolute()
    temporary = where.with_name(f".{where.name}.{os.getpid()}.tmp")
    remove(temporary)
    try:
        made = make_link(temporary, target, kinds)
        replace(temporary, where)
    except BaseException:
        remove(temporary)
        raise
    return made
