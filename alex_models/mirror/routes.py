"""The Hub's routes on the mirror: repo info, tree, paths-info, refs, commits, ``resolve`` and the
CDN, with access checks and the request-level faults (HUB_PROTOCOL.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from alex_models.mirror.catalogue import CatalogueRepo, FetchFailed, MissingBytes
from alex_models.mirror.faults import RequestInfo
from alex_models.mirror.files import file_response
from alex_models.mirror.messages import (
    HubError,
    HubRequest,
    Mirror,
    Response,
    http_number,
    iso_date,
    json_body,
)
from alex_models.mirror.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from alex_models.mirror.repos import NoSuchRepo, NoSuchRevision, RepoDir, RepoFile, Snapshot

_MODEL_INFO_KEYS = (
    "author", "cardData", "createdAt", "disabled", "downloads", "gated", "lastModified", "likes",
    "private", "sha", "siblings", "tags", "usedStorage",
)  # fmt: skip


def route(mirror: Mirror, request: HubRequest, applied: list[str]) -> Response:
    """The answer to ``request``: the CDN origin serves files; the API origin the API and resolve."""
    segments = request.segments
    if request.origin == "api" and segments in (["health"], ["metrics"]) and request.method != "POST":
        # Operations, open without a token: they name no repo, file or client.
        if segments == ["health"]:
            return _ok({"status": "ok"})
        return Response(200, {"Content-Type": METRICS_CONTENT_TYPE}, mirror.metrics_text().encode())
    if request.origin == "cdn":
        return _guarded(mirror, request, applied, None, lambda: _cdn_file(mirror, request))
    if segments[:1] == ["api"]:
        return _guarded(mirror, request, applied, None, lambda: _api(mirror, request))
    if len(segments) >= 4 and segments[2] == "resolve":
        request.scope = "resolve"
        file_path = "/".join(segments[4:])
        return _guarded(mirror, request, applied, file_path, lambda: _resolve(mirror, request))
    raise HubError(404, None, "Not Found")


def _guarded(
    mirror: Mirror,
    request: HubRequest,
    applied: list[str],
    file: str | None,
    answer: Callable[[], Response],
) -> Response:
    """Apply the request-level faults (latency, status, rate-limit), then answer."""
    if request.scope == "cdn" and len(request.segments) > 3:
        file = "/".join(request.segments[3:])
    info = RequestInfo(request.scope, file)
    latency = mirror.faults.take("latency", info)
    if latency is not None:
        applied.append("latency")
        time.sleep(latency.value)
    status = mirror.faults.take("status", info)
    if status is not None:
        applied.append("status")
        raise HubError(int(status.value), None, f"Injected fault: HTTP {int(status.value)}")
    limited = mirror.faults.take("rate-limit", info)
    if limited is not None:
        applied.append("rate-limit")
        raise HubError(429, None, "Too Many Requests", {"Retry-After": str(int(limited.value))})
    return answer()


def _api(mirror: Mirror, request: HubRequest) -> Response:
    segments = request.segments[1:]
    if segments == ["agent-harnesses"]:
        return _ok({"standardEnvVars": [], "harnesses": {}})
    if segments == ["whoami-v2"]:
        _check_token(mirror, request)
        if request.token is None:
            raise HubError(401, None, "Invalid credentials in Authorization header")
        return _ok({"type": "user", "name": "mirror-user", "auth": {"type": "access_token"}})
    if len(segments) < 3 or segments[0] not in ("models", "datasets", "spaces", "kernels"):
        raise HubError(404, None, "Not Found")
    if segments[0] != "models":
        # The mirror holds models only; other repo types do not exist here.
        raise _repo_not_found(request, f"{segments[1]}/{segments[2]}")
    repo = _open_repo(mirror, request, f"{segments[1]}/{segments[2]}")
    action, rest = (segments[3], segments[4:]) if len(segments) > 3 else ("", [])
    if action == "" and not rest:
        return _model_info(repo, request, "main")
    if action == "revision" and rest:
        return _model_info(repo, request, "/".join(rest))
    if action == "tree" and rest:
        return _tree(mirror, repo, request, rest[0], "/".join(rest[1:]).strip("/"))
    if action == "paths-info" and rest and request.method == "POST":
        return _paths_info(repo, request, "/".join(rest))
    if action == "refs" and not rest:
        return _refs(repo, request)
    if action == "commits" and rest:
        return _commits(repo, "/".join(rest))
    if action == "auth-check" and not rest:
        # Answers whether the caller may download files, so gated repos are checked as on resolve.
        _open_repo(mirror, request, repo.id, files=True)
        return _ok({})
    raise HubError(404, None, "Not Found")


def _ok(value: object, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        200, {"Content-Type": "application/json; charset=utf-8", **(headers or {})}, json_body(value)
    )


def _check_token(mirror: Mirror, request: HubRequest, repo: CatalogueRepo | None = None) -> None:
    """A token no repo knows is refused everywhere, as the Hub refuses an invalid token."""
    if request.token is None or (repo is not None and request.token in repo.settings.tokens):
        return
    if request.token not in mirror.source.all_tokens():
        raise HubError(401, None, "Invalid credentials in Authorization header")


def _repo_not_found(request: HubRequest, repo_id: str) -> HubError:
    # Anonymous callers get 401, so the client suggests logging in; a token holder gets 404.
    message = (
        "Repository not found"
        if request.token is None
        else f"Repository {repo_id} not found or you lack access"
    )
    return HubError(401 if request.token is None else 404, "RepoNotFound", message)


def _open_repo(mirror: Mirror, request: HubRequest, repo_id: str, *, files: bool = False) -> CatalogueRepo:
    try:
        repo = mirror.source.repo(repo_id)
    except NoSuchRepo:
        _check_token(mirror, request)
        raise _repo_not_found(request, repo_id) from None
    _check_token(mirror, request, repo)
    settings = repo.settings
    if settings.disabled:
        raise HubError(403, None, "Access to this resource is disabled.")
    authorized = request.token is not None and request.token in settings.tokens
    if settings.private and not authorized:
        raise _repo_not_found(request, repo_id)
    if files and settings.gated and not authorized:
        if request.token is None:
            message = (
                f"Access to model {repo_id} is restricted. You must have access to it and be authenticated "
                "to access it. Please log in."
            )
            raise HubError(401, "GatedRepo", message)
        message = (
            f"Access to model {repo_id} is restricted and you are not in the authorized list. "
            f"Visit {request.host or 'the mirror'}/{repo_id} to ask for access."
        )
        raise HubError(403, "GatedRepo", message)
    return repo


def _snapshot(repo: CatalogueRepo, revision: str, extra_headers: Mapping[str, str] | None = None) -> Snapshot:
    try:
        return repo.snapshot(repo.resolve(revision))
    except NoSuchRevision:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}", extra_headers) from None


def _commit_title(snapshot: Snapshot) -> str:
    return f"Commit {snapshot.commit[:7]}"


def _model_info(repo: CatalogueRepo, request: HubRequest, revision: str) -> Response:
    snapshot = _snapshot(repo, revision)
    settings = repo.settings
    blobs = request.flag("blobs")
    siblings = []
    for path in sorted(snapshot.files):
        item: dict[str, Any] = {"rfilename": path}
        if blobs:
            f = snapshot.files[path]
            item.update(size=f.size, blobId=f.git_oid)
            if f.sha256 is not None:
                # In model info the LFS hash key is "sha256"; in tree and paths-info it is "oid".
                item["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
        siblings.append(item)
    org = repo.id.split("/")[0]
    date = iso_date(snapshot.date)
    info: dict[str, Any] = {
        "_id": hashlib.sha1(repo.id.encode(), usedforsecurity=False).hexdigest()[:24],
        "id": repo.id,
        "modelId": repo.id,
        "author": org,
        "sha": snapshot.commit,
        "lastModified": date,
        "createdAt": date,
        "private": settings.private,
        "gated": settings.gated,
        "disabled": settings.disabled,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "cardData": {},
        "siblings": siblings,
        "usedStorage": sum(f.size for f in snapshot.files.values()),
    }
    if request.flag("securityStatus"):
        info["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
    expand = request.query.get("expand")
    if expand:
        unknown = sorted(set(expand) - set(_MODEL_INFO_KEYS))
        if unknown:
            raise HubError(400, "BadRequest", f"Invalid expand value(s): {', '.join(unknown)}")
        info = {k: v for k, v in info.items() if k in ("_id", "id", *expand)}
    return _ok(info)


def _entry(item: RepoFile | RepoDir, snapshot: Snapshot, expand: bool) -> dict[str, Any]:
    if isinstance(item, RepoDir):
        entry: dict[str, Any] = {"type": "directory", "oid": item.git_oid, "size": 0, "path": item.path}
    else:
        entry = {"type": "file", "oid": item.git_oid, "size": item.size, "path": item.path}
        if item.sha256 is not None:
            entry["lfs"] = {"oid": item.sha256, "size": item.size, "pointerSize": item.pointer_size}
    if expand:
        entry["lastCommit"] = {
            "id": snapshot.commit,
            "title": _commit_title(snapshot),
            "date": iso_date(snapshot.date),
        }
        if isinstance(item, RepoFile):
            scans = {"avScan": {"virusFound": False}, "pickleImportScan": None}
            entry["securityFileStatus"] = {"status": "safe", **scans}
    return entry


def _tree(mirror: Mirror, repo: CatalogueRepo, request: HubRequest, revision: str, base: str) -> Response:
    snapshot = _snapshot(repo, revision)
    if base and base not in snapshot.dirs:
        raise HubError(404, "EntryNotFound", f'{base} does not exist on "{revision}"')
    recursive = request.flag("recursive")
    expand = request.flag("expand")
    prefix = f"{base}/" if base else ""
    everything: dict[str, RepoFile | RepoDir] = {**snapshot.dirs, **snapshot.files}
    items = [
        everything[path]
        for path in sorted(everything)
        if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :])
    ]
    page_size = mirror.expand_page_size if expand else mirror.page_size
    start = _decode_cursor(request.query.get("cursor", [""])[-1])
    page = items[start : start + page_size]
    headers = {}
    if start + page_size < len(items):
        query = {k: v for k, v in request.query.items() if k != "cursor"}
        query["cursor"] = [_encode_cursor(start + page_size)]
        # The client follows this URL verbatim and cannot follow a relative one (HUB_PROTOCOL §2.2).
        host = request.host or mirror.url.removeprefix("http://")
        headers["Link"] = f'<http://{host}{request.path}?{urlencode(query, doseq=True)}>; rel="next"'
    return _ok([_entry(item, snapshot, expand) for item in page], headers)


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))["offset"]
    except (ValueError, KeyError, TypeError):
        raise HubError(400, "BadRequest", "Invalid cursor") from None
    if not isinstance(offset, int) or offset < 0:
        raise HubError(400, "BadRequest", "Invalid cursor")
    return offset


def _paths_info(repo: CatalogueRepo, request: HubRequest, revision: str) -> Response:
    snapshot = _snapshot(repo, revision)
    paths = request.form.get("paths", [])
    paths = [paths] if isinstance(paths, str) else paths
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):  # JSON holds anything
        raise HubError(400, "BadRequest", '"paths" must be an array of strings')
    expand_value = request.form.get("expand", False)
    if isinstance(expand_value, list):
        expand_value = expand_value[-1] if expand_value else False
    expand = expand_value is True or str(expand_value).lower() in ("1", "true")
    entries = []
    for requested in paths:
        path = requested.strip("/")
        item: RepoFile | RepoDir | None = snapshot.files.get(path) or snapshot.dirs.get(path)
        if item is not None:  # missing paths are silently left out, as on the Hub
            entries.append(_entry(item, snapshot, expand))
    return _ok(entries)


def _refs(repo: CatalogueRepo, request: HubRequest) -> Response:
    refs = repo.refs

    def items(names: Mapping[str, str], kind: str) -> list[dict[str, str]]:
        return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c} for n, c in sorted(names.items())]

    body: dict[str, Any] = {
        "branches": items(refs.branches, "heads"),
        "converts": [],
        "tags": items(refs.tags, "tags"),
    }
    if request.flag("include_prs"):
        body["pullRequests"] = []
    return _ok(body)


def _commits(repo: CatalogueRepo, revision: str) -> Response:
    # A mirror root keeps no history, only commits: a revision's log is its own commit.
    snapshot = _snapshot(repo, revision)
    title = _commit_title(snapshot)
    entry = {
        "id": snapshot.commit,
        "title": title,
        "message": "",
        "authors": [],
        "date": iso_date(snapshot.date),
    }
    return _ok([entry])


def _resolve(mirror: Mirror, request: HubRequest) -> Response:
    if request.method == "POST":
        raise HubError(405, None, "Method Not Allowed")
    org, name, _, revision, *path_parts = request.segments
    repo = _open_repo(mirror, request, f"{org}/{name}", files=True)
    snapshot = _snapshot(repo, revision)
    path = "/".join(path_parts)
    commit_header = {"X-Repo-Commit": snapshot.commit}
    item = snapshot.files.get(path)
    if item is None:
        raise HubError(404, "EntryNotFound", f'{path} does not exist on "{revision}"', commit_header)
    if mirror.faults.take("redirect-loop", RequestInfo("resolve", path)):
        request.applied.append("redirect-loop")
        here = f"http://{request.host}{request.path}"
        return Response(302, {**commit_header, "Location": here}, f"Found. Redirecting to {here}".encode())
    if item.sha256 is not None:
        location = mirror.cdn_location(request.host, repo.id, snapshot.commit, item.path)
        headers = {
            **commit_header,
            "Location": location,
            "ETag": f'"{item.sha256}"',
            "X-Linked-Etag": f'"{item.sha256}"',
            "X-Linked-Size": str(item.size),
            "Content-Type": "text/plain; charset=utf-8",
        }
        return Response(302, headers, f"Found. Redirecting to {location}".encode())
    item = _local(repo, snapshot.commit, item, request)
    return file_response(mirror, request, item, {**commit_header, "ETag": f'"{item.git_oid}"'})


def _local(repo: CatalogueRepo, commit: str, item: RepoFile, request: HubRequest) -> RepoFile:
    """The file with its bytes here, or the Hub's answer for a file that is not there."""
    try:
        local = repo.local_file(commit, item)
    except MissingBytes:
        request.cache = "miss"
        message = f"{item.path} is listed at {commit}, but this mirror does not hold its bytes"
        raise HubError(404, "EntryNotFound", message, {"X-Repo-Commit": commit}) from None
    except FetchFailed as failed:  # pull-through failed: an error answer, never unverified bytes
        request.cache = "miss"
        raise HubError(failed.status, None, failed.message, {"X-Repo-Commit": commit}) from None
    request.cache = "hit"
    return local


def _cdn_file(mirror: Mirror, request: HubRequest) -> Response:
    if request.method == "POST" or len(request.segments) < 4:
        raise HubError(404, None, "Not Found")
    org, name, commit, *path_parts = request.segments
    repo_id, path = f"{org}/{name}", "/".join(path_parts)
    expires = http_number(request.query.get("expires", [""])[-1])
    signature = request.query.get("sig", [""])[-1]
    expected = mirror.sign(repo_id, commit, path, expires or 0)
    # As bytes: compare_digest raises on a str with a non-ASCII character (a "sig=%C2%B2").
    valid = hmac.compare_digest(signature.encode(), expected.encode())
    if not valid or expires is None or expires < time.time():
        raise HubError(403, None, "Request has expired or its signature does not match")
    try:
        repo = mirror.source.repo(repo_id)
        item = repo.snapshot(commit).files[path]
    except (NoSuchRepo, KeyError):
        raise HubError(404, None, "Not Found") from None
    item = _local(repo, commit, item, request)
    return file_response(mirror, request, item, {"ETag": f'"{item.etag}"'})
