"""What a remote does, whatever the storage behind it (a folder, S3, GCS, Azure).

A remote holds blobs under ``blobs/sha256/<first two hex>/<sha256>`` below its prefix, like a store
(so a store folder is a remote), and published locks under ``locks/``. It never holds a secret in
its URL: credentials come from each ecosystem's own variables and files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from alex_models.lock import Lock
from alex_models.sources.base import Source


class BlobRemote(Protocol):
    """One remote, opened for one command."""

    @property
    def url(self) -> str:
        """The remote as the user named it (``s3://bucket/prefix``, ``file:///srv/models``): for
        messages; it holds no secret."""
        ...

    @property
    def local(self) -> bool:
        """Whether its bytes are on this machine's filesystems (a folder, a bundle), so offline
        mode may read it; an object store is reached over the network."""
        ...

    def source(self) -> Source:
        """The remote as a place ``sync`` reads blobs from (ranged reads, verified by the downloader)."""
        ...

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """Which of these blobs the remote holds, with the size of each (asked, never assumed)."""
        ...

    def upload(self, sha256: str, size: int, path: Path, advanced: Callable[[int], None]) -> bool:
        """Put the verified blob at ``path`` under ``store.blob_key(sha256)``, only if no object is there
        (a good object is never overwritten; a concurrent upload of the same blob is fine).
        Nothing appears under the final name before all its bytes are there. ``advanced`` is told
        the bytes sent. True if this call uploaded it, False if it was already there."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Write a small file (a published lock or manifest) under ``key``, replacing it whole."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class LeavesTemporaries(Protocol):
    """A remote whose uploads killed midway leave temporary files under names no reader looks at
    (a folder). An object store keeps no such thing in sight: the parts of an abandoned multipart
    upload are its lifecycle rule's to reclaim."""

    def remove_abandoned(self) -> None:
        """Remove those no upload can still be writing."""


@runtime_checkable
class ModelPublisher(Protocol):
    """A remote that also publishes each locked model as an artifact of its own: an OCI registry,
    where a model is a ModelPack manifest other tools can pull by its tag."""

    def publish(self, lock: Lock, tags: Mapping[str, str]) -> tuple[str, ...]:
        """Publish the models of ``lock`` that ``tags`` names, whose blobs the remote holds, each
        under its tag; how each is referred to (``registry/repository:tag@sha256:…``)."""
        ...


@runtime_checkable
class MountsBlobs(Protocol):
    """A remote that can take a blob it lacks from another of its owner's places without the bytes
    being sent: an OCI registry's cross-repository mount."""

    def mount_from(self, lock: Lock) -> None:
        """Before the uploads: where ``lock`` says its blobs already are, for ``upload`` to mount
        them from there when it can (``upload`` still returns True for a blob it mounted)."""
        ...

    def mounted(self) -> frozenset[str]:
        """The blobs ``upload`` mounted rather than sent."""
        ...
