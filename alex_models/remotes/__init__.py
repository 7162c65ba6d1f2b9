"""Remotes: content-addressed copies of blobs, laid out like the store
(``<prefix>/blobs/sha256/ab/<sha256>``, ``<prefix>/locks/…``), that ``push`` fills and
``sync --from`` reads. ``base`` says what a remote does; one module per kind."""

from alex_models.remotes.base import BlobRemote, open_remote

__all__ = ["BlobRemote", "open_remote"]
