"""``HubRemote``: facts from a Hugging Face endpoint, through ``huggingface_hub``.

One request per repo: ``model_info(revision, files_metadata=True)`` answers both the commit a
revision points at and every file's size and LFS SHA256. A gated repo costs one more
(``auth_check``), because its metadata is public and only the download would fail otherwise: we
want that failure at lock time, on the developer's machine, not at deploy time.

The token comes from ``huggingface_hub`` (``HF_TOKEN``, the saved login) and goes only to the
endpoint; URL sources are fetched without it. ``huggingface_hub`` errors become alex-models
errors that say what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx2
from huggingface_hub import HfApi, RepoFile
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from alex_models import __version__
from alex_models._ids import COMMIT_RE, SHA256_RE
from alex_models._retry import RETRYABLE_STATUS, RetryPolicy, status_verdict
from alex_models.errors import AlexModelsError, IntegrityError, RemoteError, UserError
from alex_models.fetch import (
    USER_AGENT,
    HTTPStatusFailure,
    content_length,
    file_url,
    hub_token,
    new_client,
    read_bytes,
    stream_sha256,
    transport_verdict,
)
from alex_models.remote import RemoteFile, RepoSnapshot, UrlFile

T = TypeVar("T")


class HubRemote:
    """The ``Remote`` of a Hugging Face endpoint (the Hub, or any compatible mirror)."""

    def __init__(
        self,
        endpoint: str,
        *,
        token: str | None = None,
        offline: bool = False,
        offline_hint: str = "unset HF_HUB_OFFLINE to lock, or use 'sync --frozen' with the committed lock",
        retry: RetryPolicy | None = None,
    ) -> None:
        """``offline_hint`` is what to do when offline mode refuses a request: it depends on the
        command that asked (``lock`` can be avoided with the committed lock; ``pull`` cannot)."""
        self.endpoint = endpoint.rstrip("/")
        # An explicit token wins; otherwise huggingface_hub's own lookup (HF_TOKEN, saved login).
        self._token = token if token is not None else hub_token()
        self._offline = offline
        self._offline_hint = offline_hint
        self._retry = retry or RetryPolicy()
        self._api = HfApi(
            endpoint=self.endpoint,
            token=self._token or False,
            library_name="alex-models",
            library_version=__version__,
        )
        self._hub_http = new_client({"User-Agent": USER_AGENT, **self._auth_header()})
        self._plain_http = new_client({"User-Agent": USER_AGENT})

    def close(self) -> None:
        self._hub_http.close()
        self._plain_http.close()

    def _auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _online(self, what: str) -> None:
        if self._offline:
            raise RemoteError(f"cannot {what}: offline mode is on (HF_HUB_OFFLINE)", hint=self._offline_hint)

    def snapshot(self, repo: str, revision: str) -> RepoSnapshot:
        self._online(f"resolve {repo}@{revision}")
        info = self._call(
            repo, revision, lambda: self._api.model_info(repo, revision=revision, files_metadata=True)
        )
        if info.gated:
            self._call(repo, revision, lambda: self._api.auth_check(repo))
        if not info.sha or info.siblings is None:
            raise RemoteError(f"{self.endpoint} answered no commit or no file list for {repo}@{revision}")
        commit = info.sha
        if not isinstance(commit, str) or not COMMIT_RE.fullmatch(commit):
            raise RemoteError(f"{self.endpoint} answered {commit!r} as the commit of {repo}@{revision}")
        if all(sibling.size is not None for sibling in info.siblings):
            files = [
                self._remote_file(repo, s.rfilename, s.size, s.lfs.sha256 if s.lfs is not None else None)
                for s in info.siblings
            ]
        else:
            # Some Hub-compatible servers ignore blobs=true; the tree listing has sizes and LFS hashes.
            files = self._tree(repo, commit)
        for remote_file in files:
            if remote_file.size < 0 or (
                remote_file.sha256 is not None and not SHA256_RE.fullmatch(remote_file.sha256)
            ):
                raise RemoteError(
                    f"{self.endpoint} listed {repo} file {remote_file.path!r} with size {remote_file.size} "
                    f"and SHA256 {remote_file.sha256!r}, which cannot be right",
                    hint="the endpoint is not a faithful Hugging Face Hub; check HF_ENDPOINT",
                )
        return RepoSnapshot(repo=repo, revision=revision, commit=commit, files=tuple(files))

    def _tree(self, repo: str, commit: str) -> list[RemoteFile]:
        entries = self._call(
            repo, commit, lambda: list(self._api.list_repo_tree(repo, revision=commit, recursive=True))
        )
        return [
            self._remote_file(
                repo, entry.path, entry.size, entry.lfs.sha256 if entry.lfs is not None else None
            )
            for entry in entries
            if isinstance(entry, RepoFile)
        ]

    def _remote_file(self, repo: str, path: object, size: object, sha256: object) -> RemoteFile:
        # The listing is JSON from a server: check the types before anything compares or hashes them.
        if (
            not isinstance(path, str)
            or not isinstance(size, int)
            or isinstance(size, bool)
            or not (sha256 is None or isinstance(sha256, str))
        ):
            raise RemoteError(
                f"{self.endpoint} listed a file of {repo} as path {path!r}, size {size!r}, "
                f"SHA256 {sha256!r}, which is not a file entry",
                hint="the endpoint is not a faithful Hugging Face Hub; check HF_ENDPOINT",
            )
        return RemoteFile(path, size, sha256)

    def file_sha256(self, repo: str, commit: str, path: str, size: int) -> str:
        self._online(f"download {repo}/{path}")
        url = file_url(self.endpoint, repo, commit, path)
        got_size, sha256 = stream_sha256(self._hub_http, url, retry=self._retry)
        if got_size != size:
            raise IntegrityError(
                f"{repo}/{path} at {commit[:12]}: the endpoint listed {size} bytes but sent {got_size}",
                hint=f"the server at {self.endpoint} is inconsistent; retry, or report it",
            )
        return sha256

    def file_bytes(self, repo: str, commit: str, path: str, size: int) -> bytes:
        self._online(f"download {repo}/{path}")
        url = file_url(self.endpoint, repo, commit, path)
        body = read_bytes(self._hub_http, url, limit=size, retry=self._retry)
        if body is None or len(body) != size:
            raise IntegrityError(
                f"{repo}/{path} at {commit[:12]}: the endpoint listed {size} bytes but sent "
                f"{'more' if body is None else len(body)}",
                hint=f"the server at {self.endpoint} is inconsistent; retry, or report it",
            )
        return body

    def url_file(self, url: str, sha256: str | None) -> UrlFile:
        self._online(f"fetch {url}")
        if sha256 is not None:
            size = content_length(self._plain_http, url, retry=self._retry)
            if size is not None:
                return UrlFile(url=url, size=size, sha256=sha256)
        try:
            size, actual = stream_sha256(self._plain_http, url, retry=self._retry)
        except HTTPStatusFailure as exc:
            if 400 <= exc.status < 500 and exc.status not in RETRYABLE_STATUS:
                raise UserError(exc.message, hint="check the 'url' in models.yaml") from None
            raise
        if sha256 is not None and actual != sha256:
            raise IntegrityError(
                f"{url} has SHA256 {actual}, but the manifest pins {sha256}",
                hint="fix 'sha256' in models.yaml if the file changed on purpose",
            )
        return UrlFile(url=url, size=size, sha256=actual)

    def _call(self, repo: str, revision: str, action: Callable[[], T]) -> T:
        try:
            return self._retry.call(action, _retryable)
        except Exception as exc:
            raise self._translate(exc, repo, revision) from None

    def _translate(self, exc: Exception, repo: str, revision: str) -> AlexModelsError | Exception:
        where = f"{self.endpoint}/{repo}"
        no_token = not self._token
        if isinstance(exc, GatedRepoError):
            why = "no token is set" if no_token else "your token has not been granted access"
            return UserError(
                f"{repo} is a gated repo and {why}",
                hint=f"accept its terms at {where}, then set HF_TOKEN (or run 'hf auth login')",
            )
        if isinstance(exc, RepositoryNotFoundError):
            why = "or it is private and no token is set" if no_token else "or your token cannot see it"
            return UserError(
                f"repo {repo} not found at {self.endpoint}, {why}",
                hint="check the repo id; for a private repo set HF_TOKEN (or run 'hf auth login')",
            )
        if isinstance(exc, RevisionNotFoundError):
            return UserError(
                f"{repo} has no revision {revision!r}", hint="use a branch, tag or commit that exists"
            )
        if isinstance(exc, EntryNotFoundError):
            return UserError(f"{repo}@{revision}: {exc}")
        if isinstance(exc, OfflineModeIsEnabled):
            return RemoteError(
                f"cannot reach {where}: huggingface_hub is in offline mode", hint="unset HF_HUB_OFFLINE"
            )
        if isinstance(exc, HfHubHTTPError) and exc.response is not None:
            status = exc.response.status_code
            if status == 401:
                return UserError(
                    f"{self.endpoint} refused the token for {repo}",
                    hint="set a valid HF_TOKEN (or run 'hf auth login'), or unset it",
                )
            return RemoteError(f"{where}@{revision}: the endpoint answered {status}", hint="retry later")
        if isinstance(exc, httpx2.HTTPError | OSError):
            return RemoteError(
                f"cannot reach {self.endpoint} for {repo}: {type(exc).__name__}: {exc}",
                hint="check the network and HF_ENDPOINT; 'alex-models sync --offline' uses only the store",
            )
        if isinstance(exc, ValueError | TypeError | KeyError | AttributeError):
            # huggingface_hub parses the answer into its own classes: malformed JSON, or JSON of
            # the wrong shape, fails there with one of these.
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            return RemoteError(
                f"{where}@{revision}: the endpoint answered something that is not a Hub listing ({detail})",
                hint="the endpoint is not a faithful Hugging Face Hub; check HF_ENDPOINT",
            )
        return exc


def _retryable(exc: Exception) -> tuple[bool, float | None]:
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return status_verdict(exc.response.status_code, exc.response.headers)
    return transport_verdict(exc)
