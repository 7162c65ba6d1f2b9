"""What the mirror's routes serve, whoever keeps it: the seam between the Hub protocol and the
places repos come from.

Two catalogues fill it: ``repos.DirectorySource`` (a folder in the fixture layout) and
``store_catalogue.StoreCatalogue`` (the repos, commits and files of locks, with the bytes from a
store's blobs). The routes know only these protocols.
"""

from __future__ import annotations

from typing import Protocol

from alex_models.mirror.repos import Refs, RepoFile, RepoSettings, Snapshot


class MissingBytes(LookupError):
    """A file the catalogue lists whose bytes are not on this machine (yet). The routes answer it
    as the Hub answers a file that is not there: 404 ``EntryNotFound``."""


class FetchFailed(Exception):
    """A file the catalogue lists whose bytes it went to get (pull-through) and could not. The
    routes answer ``status`` with ``message`` in the Hub's error shape: the message is for the
    client, so it names the file and what happened, never a path of this machine or a token."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class CatalogueRepo(Protocol):
    """One repo: its access settings, refs, commits, and the bytes of its files."""

    @property
    def id(self) -> str: ...

    @property
    def settings(self) -> RepoSettings: ...

    @property
    def refs(self) -> Refs: ...

    def resolve(self, revision: str) -> str:
        """The commit ``revision`` names; raises ``repos.NoSuchRevision``."""
        ...

    def snapshot(self, commit: str) -> Snapshot:
        """Every file and folder of ``commit`` (a commit ``resolve`` returned)."""
        ...

    def local_file(self, commit: str, item: RepoFile) -> RepoFile:
        """``item`` of ``commit`` with its bytes at ``item.disk_path``, ready to send; raises
        ``MissingBytes`` when they are not here, ``FetchFailed`` when getting them failed."""
        ...


class Catalogue(Protocol):
    """The repos a mirror serves."""

    def repo(self, repo_id: str) -> CatalogueRepo:
        """The repo ``repo_id``; raises ``repos.NoSuchRepo``."""
        ...

    def all_tokens(self) -> frozenset[str]:
        """Every token some repo accepts: a token outside this set is an invalid credential."""
        ...
