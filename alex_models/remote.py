"""Facts about remote sources, and the interface that fetches them.

The resolver works on these facts only (it never touches the network); ``HubRemote`` in
``alex_models.hub`` fetches them from a Hugging Face endpoint, ``oci.artifact`` reads registry
artifacts, and tests give the resolver facts built by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from alex_models.lock import Role


@dataclass(frozen=True)
class RemoteFile:
    """A file of a repo at one commit."""

    path: str
    size: int
    sha256: str | None
    """The SHA256 the Hub reports for an LFS file; None for a plain git file (hashed on demand)."""


@dataclass(frozen=True)
class RepoSnapshot:
    """A revision of a repo, resolved to a commit, with all its files (in any order)."""

    repo: str
    revision: str
    commit: str
    files: tuple[RemoteFile, ...]


@dataclass(frozen=True)
class UrlFile:
    """A plain HTTPS file: its size and SHA256."""

    url: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PresetDraft:
    """The draft model a repo's ``preset.ini`` points at (``hf-repo-draft = org/repo:Q4_K_M``),
    locked beside the model that takes the preset."""

    repo: str
    tag: str | None
    """The quant after ``:``, upper-cased; None picks as llama.cpp does without one."""
    file: str | None
    """The draft's path in that repo (the section's ``model-draft``), when the preset names it."""
    where: str
    """``org/name/preset.ini:LINE`` of the key, for messages."""


@dataclass(frozen=True)
class ArtifactLayer:
    """A layer of a model artifact in a registry: the file it is, named and classified by the
    artifact's format (``oci.artifact``)."""

    path: str
    kind: Role
    size: int
    sha256: str


@dataclass(frozen=True)
class ArtifactSnapshot:
    """A model artifact as a registry holds it now: its manifest's digest and its layers, in order."""

    reference: str
    """As the manifest names it: ``REGISTRY/REPOSITORY:TAG`` or ``…@sha256:…``."""
    digest: str
    """The manifest's ``sha256:…``: what the tag pointed at when asked."""
    quantization: str | None
    """The quantization its config declares (ModelPack ``config.quantization``, Docker's
    ``config.quantization`` or ``config.gguf.quantization``), if any."""
    layers: tuple[ArtifactLayer, ...]


@dataclass(frozen=True)
class Facts:
    """Everything the resolver needs to know about remote sources."""

    snapshots: Mapping[tuple[str, str], RepoSnapshot] = field(default_factory=dict)
    """By (repo, revision)."""
    hashes: Mapping[tuple[str, str, str], str] = field(default_factory=dict)
    """SHA256 of plain git files, by (repo, commit, path)."""
    urls: Mapping[str, UrlFile] = field(default_factory=dict)
    preset_drafts: Mapping[str, PresetDraft] = field(default_factory=dict)
    """The draft each freshly resolved model's repo preset names, by model name."""
    artifacts: Mapping[str, ArtifactSnapshot] = field(default_factory=dict)
    """By the manifest's ``oci`` reference."""


class Remote(Protocol):
    """Where facts come from. Each method is one small question to the network."""

    def snapshot(self, repo: str, revision: str) -> RepoSnapshot:
        """Resolve ``revision`` and list the repo's files at that commit."""
        ...

    def file_sha256(self, repo: str, commit: str, path: str, size: int) -> str:
        """Download a plain git file once and hash it (the Hub reports no SHA256 for those)."""
        ...

    def file_bytes(self, repo: str, commit: str, path: str, size: int) -> bytes:
        """A small file of a repo (a ``preset.ini``), read whole: the lock reads what it pins."""
        ...

    def url_file(self, url: str, sha256: str | None) -> UrlFile:
        """Size and SHA256 of a plain HTTPS file; ``sha256`` given by the manifest saves a download."""
        ...
