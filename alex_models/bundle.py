"""The bundle: a lock, its manifest and their blobs in one plain tar, for sites with no network.

A bundle is a remote in a file: its members are named as a remote's objects (``store.blob_key``,
``store.published_keys``), in this order::

    locks/<sha256 of the lock>.lock      the lock (its name vouches for its text)
    locks/<sha256 of the lock>.yaml      the manifest, when the project had one
    blobs/sha256/ab/<sha256>             each blob, as the store holds it

The tar is plain (no compression), so each member's bytes lie at a known offset: ``sync --from``
reads ranges of them in place, and ``bundle import`` streams them into the store. A tar is
untrusted input: anything but a regular file under one of those names (a link, a device, a
directory, ``..``, an absolute name, a sparse file, a name twice) is refused, and a file that ends
before tar's end-of-archive marker is truncated, wherever the cut falls.
"""

from __future__ import annotations

import functools
import io
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from alex_models._fs import relpath_problem
from alex_models._platform import flush, flush_directory, replace
from alex_models._units import MiB
from alex_models.errors import IntegrityError, UserError

_CHUNK = 4 * MiB
_BLOCK = tarfile.BLOCKSIZE
_COMPRESSED = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bzip2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
    b"\x04\x22\x4d\x18": "lz4",
}
_LOCK = re.compile(r"locks/([0-9a-f]{64})\.(lock|yaml)")
_BLOB = re.compile(r"blobs/sha256/([0-9a-f]{2})/([0-9a-f]{64})")

Kind = Literal["lock", "manifest", "blob"]


@dataclass(frozen=True)
class Member:
    """One member of a bundle, checked: what it is and where its bytes lie in the file."""

    name: str
    kind: Kind
    digest: str
    """The SHA256 its name carries: the blob's, or the lock text's (for the manifest too)."""
    offset: int
    """Where its bytes start in the tar file."""
    size: int


class Bundle:
    """A bundle file opened for reading: ``members`` checks each header as it comes, ``chunks``
    reads a member's bytes; both move forward through the file, so an import streams it."""

    def __init__(self, path: Path, file: BinaryIO, tar: tarfile.TarFile) -> None:
        self.path = path
        self._file = file
        self._tar = tar

    @classmethod
    def open(cls, path: Path) -> Bundle:
        """The bundle at ``path``; one that is missing, compressed or not a tar is a user error."""
        try:
            file = path.open("rb")
        except OSError as exc:
            raise UserError(
                f"cannot read the bundle {path}: {exc.strerror or exc}",
                hint="give the path of a file written by 'alex-models bundle create'",
            ) from None
        try:
            _refuse_compressed(path, file.read(8))
            file.seek(0)
            tar = tarfile.TarFile(fileobj=file, mode="r")
        except tarfile.TarError as exc:
            file.close()
            raise UserError(
                f"{path} is not a tar file ({exc})",
                hint="give the path of a file written by 'alex-models bundle create'",
            ) from None
        except BaseException:
            file.close()
            raise
        return cls(path, file, tar)

    def fileno(self) -> int:
        return self._file.fileno()

    def members(self) -> Iterator[Member]:
        """Every member, in the file's order, each checked before it is yielded; at the end, the
        end-of-archive marker must be there (else the file was cut short)."""
        seen: set[str] = set()
        while True:
            try:
                info = self._tar.next()
            except tarfile.TarError as exc:
                raise self._damaged(f"after {len(seen)} member(s): {exc}") from None
            if info is None:
                break
            member = self._checked(info)
            if member.name in seen:
                raise UserError(
                    f"refusing {self.path}: it holds {member.name!r} twice",
                    hint="a bundle holds each file once: write it again with 'alex-models bundle create'",
                )
            seen.add(member.name)
            yield member
        self._file.seek(self._tar.offset)
        if self._file.read(_BLOCK) != bytes(_BLOCK):  # a header cut or damaged also ends tarfile's walk
            raise self._damaged(f"it ends after {len(seen)} member(s), with no end-of-archive marker")

    def chunks(self, member: Member) -> Iterator[bytes]:
        """The bytes of ``member``, in large pieces; a file that ends inside it is truncated."""
        self._file.seek(member.offset)
        left = member.size
        while left:
            piece = self._file.read(min(_CHUNK, left))
            if not piece:
                raise self._damaged(f"it ends inside {member.name}")
            left -= len(piece)
            yield piece

    def close(self) -> None:
        self._tar.close()
        self._file.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _checked(self, info: tarfile.TarInfo) -> Member:
        name = info.name
        problem = relpath_problem(name)
        if problem is None and not info.isreg():
            problem = f"it is a {_kind_of(info)}, and a bundle holds only regular files"
        elif problem is None and info.issparse():
            problem = "it is a sparse file, whose bytes do not lie in one piece"
        if problem is not None:
            raise UserError(
                f"refusing {self.path}: member {name!r}: {problem}",
                hint="a tar is untrusted input: use one written by 'alex-models bundle create'",
            )
        blob, lock = _BLOB.fullmatch(name), _LOCK.fullmatch(name)
        if blob is not None and blob[2].startswith(blob[1]):
            return Member(name, "blob", blob[2], info.offset_data, info.size)
        if lock is not None:
            kind: Kind = "lock" if lock[2] == "lock" else "manifest"
            return Member(name, kind, lock[1], info.offset_data, info.size)
        raise UserError(
            f"refusing {self.path}: member {name!r} is no part of a bundle",
            hint="a bundle holds locks/<sha256>.lock, locks/<sha256>.yaml and blobs/sha256/ab/<sha256>",
        )

    def _damaged(self, what: str) -> IntegrityError:
        return IntegrityError(
            f"{self.path} is truncated or damaged: {what}",
            hint="copy the bundle again (compare its size and sha256sum with the original's)",
        )


def _refuse_compressed(path: Path, head: bytes) -> None:
    """Ranged reads need the members' bytes as they are: a compressed tar is refused by name."""
    for magic, compression in _COMPRESSED.items():
        if head.startswith(magic):
            raise UserError(
                f"{path} is {compression}-compressed; a bundle is a plain tar, read in place",
                hint=f"decompress it first ({compression} -d; weights hardly compress anyway)",
            )


def _kind_of(info: tarfile.TarInfo) -> str:
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    if info.isdir():
        return "directory"
    if info.ischr() or info.isblk():
        return "device"
    return "fifo" if info.isfifo() else "special file"


def blob_index(bundle: Bundle) -> dict[str, Member]:
    """The blobs of a bundle by SHA256, from one pass over its headers (their bytes are skipped)."""
    return {member.digest: member for member in bundle.members() if member.kind == "blob"}


def write_bundle(
    out: Path,
    files: list[tuple[str, bytes]],
    blobs: list[tuple[str, Path]],
    copied: Callable[[str, int], None] = lambda key, count: None,
) -> int:
    """Write a bundle of the small ``files`` then the ``blobs`` (each copied from its file as the
    tar is written: no second copy; ``copied(key, bytes)`` told as they go), under a temporary name
    beside ``out``, renamed to ``out`` once complete and on disk. Returns its size. A failure or an
    interrupt leaves no ``out``."""
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.TarFile(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_CHUNK) as tar:
                for key, data in files:
                    tar.addfile(_header(key, len(data)), io.BytesIO(data))
                for key, path in blobs:
                    with path.open("rb") as blob:
                        counted = _Counted(blob, functools.partial(copied, key))
                        tar.addfile(_header(key, os.fstat(blob.fileno()).st_size), counted)
            raw.flush()
            flush(raw.fileno())
            size = raw.tell()
        temporary.chmod(0o644)  # mkstemp made it 0600; a bundle is for others to read
        replace(temporary, out)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    flush_directory(out.parent)
    return size


class _Counted:
    """A file as tarfile reads it, each read told to ``told``."""

    def __init__(self, file: BinaryIO, told: Callable[[int], None]) -> None:
        self._file = file
        self._told = told

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._told(len(data))
        return data


def _header(key: str, size: int) -> tarfile.TarInfo:
    """A member's header with nothing of this machine in it (no owner, no time): the same lock
    and blobs give the same bundle, byte for byte."""
    info = tarfile.TarInfo(key)
    info.size = size
    info.mode = 0o444
    info.mtime = 0
    return info
