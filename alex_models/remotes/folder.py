"""A folder as a remote (``file:///srv/models``): a shared NFS or SMB folder, a mounted disk.

Uploads copy into a temporary name beside the final one and hard-link it into place, which fails
when the name exists: a good object is never overwritten, two pushers of one blob both succeed,
and a kill leaves at most a temporary file (``.<sha256>.*.part``) that no reader looks at; each
push removes those that are clearly abandoned (``remove_abandoned``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from alex_models._fs import atomic_write
from alex_models._platform import flush, flush_directory, place_if_absent, remove
from alex_models._units import MiB
from alex_models.errors import UsageError, UserError
from alex_models.sources import FolderSource
from alex_models.store import Store

_COPY_SIZE = 4 * MiB
ABANDONED_AFTER = 24 * 3600.0
"""Seconds a temporary file goes unwritten before a push removes it. The folder is shared, so a
young one may be another host's copy in progress, which writes every few MiB; a day is far
beyond a stalled mount, and beyond the clock skew between the hosts."""


def file_path(url: str) -> Path:
    """The path of ``file:///absolute/path``; any other form (a host, a relative path, a query) is
    refused."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or parts.query or parts.fragment or not path.startswith("/"):
        raise UsageError(
            f"{url!r} is not a folder or bundle remote",
            hint="write it as file:///absolute/path (three slashes: no host, no query)",
        )
    return Path(path)


@dataclass(frozen=True)
class FolderRemote:
    """The folder ``root``, laid out like the store."""

    url: str
    root: Path

    @property
    def local(self) -> bool:
        return True

    def source(self) -> FolderSource:
        """The folder as a source ``sync`` reads (its bytes verified by the downloader)."""
        return FolderSource(self.root)

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """The size of each of these blobs the folder holds, by stat."""
        found = {}
        for digest in digests:
            try:
                found[digest] = Store(self.root).blob_path(digest).stat().st_size
            except (FileNotFoundError, NotADirectoryError):
                continue
        return found

    def upload(self, sha256: str, size: int, path: Path, advanced: Callable[[int], None]) -> bool:
        """Copy ``path`` in under a temporary name, fsync it, and link it to its final name only if
        that is free. ``advanced`` may raise to stop the copy (Ctrl-C); the temporary file goes."""
        final = Store(self.root).blob_path(sha256)
        if final.exists():
            return False
        with self._reporting(final):
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{sha256}.", suffix=".part", dir=final.parent)
            return self._place(Path(name), fd, final, path, advanced)

    def _place(
        self, temporary: Path, fd: int, final: Path, path: Path, advanced: Callable[[int], None]
    ) -> bool:
        try:
            with os.fdopen(fd, "wb") as target, path.open("rb") as source:
                while chunk := source.read(_COPY_SIZE):
                    target.write(chunk)
                    advanced(len(chunk))
                target.flush()
                flush(target.fileno())
            temporary.chmod(0o444)  # like the store's blobs: a blob is never edited in place
            if not place_if_absent(temporary, final):
                return False  # another pusher got there first, with the same verified bytes
            flush_directory(final.parent)
            return True
        finally:
            remove(temporary)

    def remove_abandoned(self) -> None:
        """Remove the temporary files of uploads killed midway, here or on another host, that
        nothing has written for ``ABANDONED_AFTER``. One that cannot be removed stays: no reader
        looks at it."""
        cutoff = time.time() - ABANDONED_AFTER
        for temporary in (self.root / "blobs" / "sha256").glob("*/.*.part"):
            with contextlib.suppress(OSError):
                if temporary.stat().st_mtime < cutoff:
                    remove(temporary)

    def write(self, key: str, data: bytes) -> None:
        """Replace the small file ``key`` whole, atomically."""
        with self._reporting(self.root / key):
            atomic_write(self.root / key, data)

    @contextlib.contextmanager
    def _reporting(self, path: Path) -> Iterator[None]:
        """A folder that cannot be written is the user's to fix: one line naming the remote."""
        try:
            yield
        except OSError as exc:
            raise UserError(
                f"{self.url}: cannot write {path}: {exc.strerror or exc}",
                hint="check that the folder exists, is mounted and is writable here",
            ) from None

    def close(self) -> None:
        """A folder holds no connection."""
