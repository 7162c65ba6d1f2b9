"""Filesystem helpers every module shares: atomic writes and the path-traversal guard."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Literal

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


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a mix.

    The bytes go to a unique temporary file in the same directory, are fsynced, get ``mode``
    (mkstemp creates 0600), and replace ``path`` in one rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as tmp_file:
            tmp_file.write(data)
            tmp_file.flush()
            os.fsync(tmp_file.fileno())
        tmp.chmod(mode)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new entry in ``directory`` durable: the entry is on disk only then."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
) -> None:
    """Make ``where`` a link to ``target``, replacing whatever was there in one rename.

    A hard link that the filesystem refuses (another device) becomes ``fallback``: a symlink to
    the absolute target, or a copy. ``kind="symbolic"`` links ``target`` as given (it may be relative).
    """
    temporary = where.with_name(f".{where.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    try:
        if kind == "symbolic":
            temporary.symlink_to(target)
        else:
            try:
                temporary.hardlink_to(target)
            except OSError:
                if fallback == "copy":
                    shutil.copyfile(target, temporary)
                else:
                    temporary.symlink_to(target.absolute())
        temporary.replace(where)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
