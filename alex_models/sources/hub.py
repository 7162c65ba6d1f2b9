"""The Hub as a source: a file of a repo at a commit, from its ``resolve`` URL.

The first answer is the Hub's redirect to its CDN. It announces the file's SHA256
(``X-Linked-Etag``), checked against the lock before any byte is sent; the CDN address it gives
is remembered for the transfer's other pieces (one request to the API per file, not per piece),
without the token when the CDN is another origin, and forgotten when it expires. The token goes
to the endpoint's origin only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx2

from alex_models._ids import SHA256_RE
from alex_models.errors import AlexModelsError, UserError
from alex_models.fetch import file_url, without_query
from alex_models.sources.base import Blob, LockDisagrees, Transient, Wire
from alex_models.sources.http import HttpReader, download_headers, origin


def announced_sha256(headers: httpx2.Headers) -> str | None:
    """The file's SHA256 as the Hub announces it on ``resolve`` (``X-Linked-Etag: "<sha256>"``, a
    weak ``W/`` form too), or None: absent, or not a SHA256 (a git blob id, a CDN's own tag)."""
    value = headers.get("X-Linked-Etag", "").strip().removeprefix("W/").strip('"').strip().lower()
    return value if SHA256_RE.fullmatch(value) else None


@dataclass(frozen=True)
class HubSource:
    """``path`` of ``repo`` at ``commit`` on the endpoint; ``token`` is sent to the endpoint only."""

    endpoint: str
    repo: str
    commit: str
    path: str
    token: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return origin(self.endpoint)

    @property
    def url(self) -> str:
        return file_url(self.endpoint, self.repo, self.commit, self.path)

    def reader(self, blob: Blob, wire: Wire) -> HubReader:
        return HubReader(blob, wire, self.url, download_headers(self.token))


class HubReader(HttpReader):
    """One file from the Hub for one transfer: its ``resolve`` URL, then where that led."""

    def __init__(self, blob: Blob, wire: Wire, url: str, headers: Mapping[str, str]) -> None:
        super().__init__(blob, wire, url, headers)
        self._at: tuple[str, Mapping[str, str]] = (url, headers)
        """Where pieces are asked for, and with which headers: the file's URL, or where it led."""

    def _target(self) -> tuple[str, Mapping[str, str]]:
        return self._at

    def _direct(self, url: str) -> bool:
        return url != self.url  # the file's own URL redirects (to the CDN): that answer is httpx2's

    def _announced(self, response: httpx2.Response) -> None:
        announced = announced_sha256(response.headers)
        if announced is None or announced == self.blob.sha256:
            return
        fix = (
            f"restore models.lock from git or run 'alex-models lock --upgrade-model {self.blob.model}'"
            if self.blob.model
            else "check the SHA256 it was asked for"
        )
        raise LockDisagrees(
            f"{self.blob.label}: the server says this file's SHA256 is {announced}, "
            f"the lock pins {self.blob.sha256}",
            hint=f"the lock is wrong, not the download (nothing was downloaded); {fix}",
        )

    def _check(self, url: str, response: httpx2.Response) -> None:
        if response.status_code >= 400 and url != self.url:
            # A remembered CDN address expired (signed URLs do): ask the file's own URL again.
            self._at = (self.url, self.headers)
            raise Transient(f"{without_query(url)} answered {response.status_code}", retry_after=0)
        super()._check(url, response)
        self._remember(url, response)

    def _remember(self, url: str, response: httpx2.Response) -> None:
        """Send the next pieces straight where ``url`` redirected (the Hub's CDN), saving a request
        to the API each; without the token when that is another origin, as httpx does."""
        final = response.url
        if str(final) == url:
            return
        first = httpx2.URL(self.url)
        same_origin = (final.scheme, final.host, final.port) == (first.scheme, first.host, first.port)
        headers = {k: v for k, v in self.headers.items() if same_origin or k.lower() != "authorization"}
        self._at = (str(final), headers)

    def _denied(self, where: str, status: int) -> AlexModelsError:
        return UserError(
            f"{self.blob.label}: {where} answered {status}: access denied",
            hint="set HF_TOKEN to a token with access (for a gated repo, accept its terms first)",
        )
