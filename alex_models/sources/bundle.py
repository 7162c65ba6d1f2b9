"""A bundle as a source (``sync --from file:///media/usb/models.tar``): each blob read in place,
by ranges of its member's bytes, from one open file.

The tar's headers are read once, when it is opened; every range after that is a positional read
on the one descriptor, so the downloader's parallel pieces share it without seeking. Its bytes are
verified like any other source's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alex_models.bundle import Bundle, Member, blob_index
from alex_models.errors import IntegrityError
from alex_models.sources.base import Blob, Missing, Wire
from alex_models.sources.folder import FileBody
from alex_models.store import blob_key


class BundleSource:
    """The bundle at ``path``, opened and indexed; ``close`` releases its file."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()
        self._bundle = Bundle.open(self.path)
        try:
            self.blobs: dict[str, Member] = blob_index(self._bundle)
            """Its blob members by SHA256."""
        except BaseException:
            self._bundle.close()
            raise

    @property
    def name(self) -> str:
        return self.path.as_uri()

    def reader(self, blob: Blob, wire: Wire) -> BundleReader:
        return BundleReader(self, blob)

    def open_range(self, member: Member, start: int, end: int, *, whole: bool) -> FileBody:
        """Bytes ``start`` to ``end`` of ``member``, read in place."""
        return FileBody(self._bundle.fileno(), member.offset + start, member.offset + end, whole=whole)

    def close(self) -> None:
        self._bundle.close()


class BundleReader:
    """One blob of a bundle: its member, opened for each range."""

    def __init__(self, source: BundleSource, blob: Blob) -> None:
        self.source = source
        self.blob = blob

    @contextlib.contextmanager
    def open(self, start: int, end: int) -> Iterator[FileBody]:
        member = self.source.blobs.get(self.blob.sha256)
        if member is None:
            raise Missing(
                f"{self.source.name} has no {blob_key(self.blob.sha256)}",
                hint="a bundle holds the models it was created with: see 'alex-models bundle create --only'",
            )
        if member.size != self.blob.size:
            raise IntegrityError(
                f"{self.blob.label}: {self.source.name} holds {member.size} bytes as {member.name}, "
                f"the lock pins {self.blob.size}",
                hint="nothing was stored; that bundle is damaged: copy it again, or use another source",
            )
        yield self.source.open_range(member, start, end, whole=start == 0 and end == self.blob.size)
