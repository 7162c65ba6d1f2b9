"""A folder laid out like the store as a source: ``<root>/blobs/sha256/ab/<sha256>``.

A store is one (another machine's, mounted; a pre-synced volume), and so is any copy of its
``blobs/``: the ``file://`` remote. Its bytes are verified like any other source's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from alex_models._platform import open_fd, read_at
from alex_models.errors import IntegrityError, UserError
from alex_models.sources.base import Blob, Missing, Wire
from alex_models.store import Store

_READ_SIZE = 1024 * 1024


@dataclass(frozen=True)
class FolderSource:
    """The folder ``root``, laid out like the store; it serves any blob it holds."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.absolute().as_uri()

    def reader(self, blob: Blob, wire: Wire) -> FolderReader:
        return FolderReader(self, blob)


class FolderReader:
    """One blob of the folder: its file, opened for each range."""

    def __init__(self, source: FolderSource, blob: Blob) -> None:
        self.source = source
        self.blob = blob
        self.path = Store(source.root).blob_path(blob.sha256)

    @contextlib.contextmanager
    def open(self, start: int, end: int) -> Iterator[FileBody]:
        try:
            fd = open_fd(self.path, os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            relative = self.path.relative_to(self.source.root)
            raise Missing(
                f"{self.source.name} has no {relative}",
                hint="a store folder holds only the files synced into it",
            ) from None
        except OSError as exc:
            raise UserError(
                f"{self.blob.label}: cannot read {self.path}: {exc.strerror}",
                hint="check the folder's permissions",
            ) from None
        try:
            size = os.fstat(fd).st_size
            if size != self.blob.size:
                raise IntegrityError(
                    f"{self.blob.label}: {self.path} holds {size} bytes, the lock pins {self.blob.size}",
                    hint="nothing was stored; that copy is damaged: delete it, or fetch from another source",
                )
            yield FileBody(fd, start, end, whole=start == 0 and end == self.blob.size)
        finally:
            os.close(fd)


class FileBody:
    """Bytes ``start`` to ``end`` of an open file, read in large pieces."""

    def __init__(self, fd: int, start: int, end: int, *, whole: bool) -> None:
        self.whole = whole
        self._fd = fd
        self._start = start
        self._end = end

    def __iter__(self) -> Iterator[bytes]:
        position = self._start
        while position < self._end:
            piece = read_at(self._fd, min(_READ_SIZE, self._end - position), position)
            if not piece:
                return  # the file is shorter than it was: the caller sees the shortfall
            position += len(piece)
            yield piece

    def cut(self) -> None:
        """Nothing blocks for long on a local file: the reader stops at its next piece."""
