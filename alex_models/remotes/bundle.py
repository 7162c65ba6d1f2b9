"""A bundle as a remote (``file:///media/usb/models.tar``): read-only, for ``sync --from`` and
``status --remote``; ``bundle create`` writes one, ``push`` cannot add to it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from alex_models.errors import UserError
from alex_models.sources import BundleSource


class BundleRemote:
    """The bundle at ``path``, opened and indexed once for the command."""

    def __init__(self, url: str, path: Path) -> None:
        self._url = url
        self._source = BundleSource(path)

    @property
    def url(self) -> str:
        return self._url

    @property
    def local(self) -> bool:
        return True

    def source(self) -> BundleSource:
        return self._source

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """The size of each of these blobs the bundle holds, from its index."""
        blobs = self._source.blobs
        return {digest: blobs[digest].size for digest in digests if digest in blobs}

    def upload(self, sha256: str, size: int, path: Path, advanced: Callable[[int], None]) -> bool:
        raise self._read_only()

    def write(self, key: str, data: bytes) -> None:
        raise self._read_only()

    def close(self) -> None:
        self._source.close()

    def _read_only(self) -> UserError:
        return UserError(
            f"{self._url} is a bundle, which push cannot add to",
            hint="write a new one with 'alex-models bundle create', or push to a folder or a bucket",
        )
