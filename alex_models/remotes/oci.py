"""An OCI registry's repository as a remote: ``oci://REGISTRY/REPOSITORY``.

A blob is a raw layer, named by its SHA256 as in the store; ``push`` uploads the missing ones,
then publishes each locked model as a ModelPack artifact tagged with the model's name, then the
lock and its manifest as one-layer artifacts tagged ``locks-<sha256>.lock`` and ``.yaml``
(``oci.modelpack``). A registry stores an upload under its digest only once every byte arrived
and hashed to it, so a kill mid-push leaves no half blob, and a rerun sends what is missing. A
blob the lock names in another repository of the same registry (an ``oci:`` model's layer) is
mounted from there first (``mount_from``), and sent only if the registry will not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alex_models.errors import IntegrityError
from alex_models.lock import Lock
from alex_models.oci import Address, Registry
from alex_models.oci.modelpack import EMPTY, IMAGE_MANIFEST, file_manifest, model_artifact, tag_of
from alex_models.oci.registry import CHUNK_SIZE
from alex_models.sources.oci import OciSource

_HEADS_AT_ONCE = 8


class OciRemote:
    """The repository at ``url``, opened for one command."""

    def __init__(self, url: str, *, chunk_size: int = CHUNK_SIZE) -> None:
        self.registry = Registry(Address.parse(url), chunk_size=chunk_size)
        self._sources: dict[str, list[str]] = {}
        """Per blob, the repositories of this registry to mount it from."""
        self._mounted: set[str] = set()

    @property
    def url(self) -> str:
        return self.registry.address.url

    @property
    def local(self) -> bool:
        return False

    def source(self) -> OciSource:
        return OciSource(self.registry)

    def sizes(self, digests: Iterable[str]) -> dict[str, int]:
        """A HEAD per blob, several at once (a registry lists no blobs)."""
        wanted = list(digests)
        self.registry.ping()  # authorization learned once, before the HEADs run in parallel
        with ThreadPoolExecutor(max_workers=_HEADS_AT_ONCE) as pool:
            found = dict(zip(wanted, pool.map(self.registry.blob_size, wanted), strict=True))
        return {digest: size for digest, size in found.items() if size is not None}

    def upload(self, sha256: str, size: int, path: Path, advanced: Callable[[int], None]) -> bool:
        there = self.registry.blob_size(sha256)
        if there is not None:
            if there != size:
                raise IntegrityError(
                    f"{self.url} holds sha256:{sha256} with {there} bytes, the blob has {size}",
                    hint="that blob is damaged: delete it in the registry, then push again",
                )
            return False
        location = None
        if self._sources.get(sha256):
            location = self.registry.mount(sha256, self._sources[sha256])
            if location is None:
                self._mounted.add(sha256)
                return True
        self.registry.upload(sha256, size, path, advanced, location)
        return True

    def mount_from(self, lock: Lock) -> None:
        """The layers of ``lock``'s ``oci`` models locked from another repository of this registry
        are mounted from there by ``upload``, not sent."""
        address = self.registry.address
        for entry in lock.models.values():
            repository = entry.repository
            if entry.source != "oci" or (entry.registry or "").lower() != address.registry:
                continue
            if repository is None or repository == address.repository:
                continue
            for file in entry.files:
                sources = self._sources.setdefault(file.sha256, [])
                if repository not in sources:
                    sources.append(repository)

    def mounted(self) -> frozenset[str]:
        return frozenset(self._mounted)

    def write(self, key: str, data: bytes) -> None:
        """``key`` as a one-layer artifact tagged ``tag_of(key)``, replacing that tag."""
        self.registry.put_blob(data)
        self.registry.put_blob(EMPTY)
        self.registry.put_manifest(tag_of(key), file_manifest(key, data), IMAGE_MANIFEST)

    def publish(self, lock: Lock, tags: Mapping[str, str]) -> tuple[str, ...]:
        """Each model ``tags`` names as a ModelPack artifact under its tag there (its blobs are
        uploaded already); their references, ``REGISTRY/REPOSITORY:TAG@sha256:…``."""
        published = []
        address = self.registry.address
        for name, tag in tags.items():
            artifact = model_artifact(name, lock.models[name])
            self.registry.put_blob(artifact.config)
            digest = self.registry.put_manifest(tag, artifact.manifest, IMAGE_MANIFEST)
            published.append(f"{address.registry}/{address.repository}:{tag}@{digest}")
        return tuple(published)

    def close(self) -> None:
        self.registry.close()
