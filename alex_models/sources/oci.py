"""A registry's repository as a source: a blob by its digest, ``GET /v2/<name>/blobs/sha256:…``.

Not imported by ``sources/__init__``: a registry is read only when ``--from oci://…`` names one.
The HTTP wire is ``HttpReader``'s (ranges, a 200 to a ranged GET read as the whole blob, lengths
checked, a redirect to the registry's storage followed without the Authorization header); the
registry adds its authorization, learned by ``Registry.ping``, and renews it when a 401 says it
expired.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx2

from alex_models.errors import AlexModelsError
from alex_models.oci import Registry
from alex_models.sources.base import Blob, Missing, Transient, Wire
from alex_models.sources.http import HttpReader, download_headers


@dataclass(frozen=True)
class OciSource:
    """The blobs of ``registry``'s repository."""

    registry: Registry

    @property
    def name(self) -> str:
        return self.registry.address.url

    def reader(self, blob: Blob, wire: Wire) -> OciReader:
        return OciReader(blob, wire, self.registry)


class OciReader(HttpReader):
    """One blob of the repository for one transfer."""

    def __init__(self, blob: Blob, wire: Wire, registry: Registry) -> None:
        super().__init__(blob, wire, registry.address.blob_url(blob.sha256), download_headers(None))
        self.registry = registry
        self._sent: str | None = None

    def _target(self) -> tuple[str, Mapping[str, str]]:
        self.registry.ping()  # once per command: learns the authorization before the first GET
        auth = self.registry.auth.header
        self._sent = auth.get("Authorization")
        return self.url, {**self.headers, **auth}

    def _check(self, url: str, response: httpx2.Response) -> None:
        status = response.status_code
        if status == 404:
            raise Missing(
                f"{self.registry.address.url} has no sha256:{self.blob.sha256}",
                hint="a registry holds only the blobs pushed to it: run 'alex-models push' there",
            )
        if status == 401 and self.registry.auth.answer(self.registry.client, response, self._sent):
            raise Transient("the registry's token expired", retry_after=0)  # asked again with a new one
        super()._check(url, response)

    def _denied(self, where: str, status: int) -> AlexModelsError:
        return self.registry.auth.denied(status)
