"""Raw HTTP checks of the mirror against the Hub contract in HUB_PROTOCOL.md (§1, §2, §3.2, §3.3, §5.1)."""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import httpx2
import pytest

from alex_models.mirror import MirrorRoot, MirrorServer

REPO = "org/model"
PRIVATE = "org/private"
DISABLED = "org/disabled"
GATED = "org/gated"
PRIVATE_TOKEN = "hf_private_token"
GATED_TOKEN = "hf_gated_token"


def pseudo_random(n: int, seed: bytes = b"seed") -> bytes:
    """Deterministic bytes with no period, so a slice at the wrong offset never matches."""
    return hashlib.shake_256(seed).digest(n)


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


CONFIG = b'{"architectures": ["Llama"], "hidden_size": 64}\n'
NOTES = pseudo_random(5000, b"notes")
WEIGHTS = pseudo_random(300_000, b"weights")
FEATURE_CONFIG = b'{"feature": true}\n'
FILES = {
    "config.json": CONFIG,
    "notes.txt": NOTES,
    "weights.gguf": WEIGHTS,
    "sub/dir/nested.txt": b"nested\n",
    "sub/other.json": b"{}\n",
    "\u6a21\u578b.txt": b"unicode name\n",
}


@dataclass
class Hub:
    root: MirrorRoot
    server: MirrorServer
    client: httpx2.Client
    commit: str
    feature_commit: str

    def get(
        self,
        path: str,
        *,
        method: str = "GET",
        token: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx2.Response:
        """A request to the API origin, with ``token`` as a Bearer token if given."""
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, f"{self.server.url}{path}", headers=headers, **kwargs)

    def cdn_location(self, path: str, *, repo: str = REPO, token: str | None = None) -> str:
        response = self.get(f"/{repo}/resolve/main/{path}", method="HEAD", token=token)
        assert response.status_code == 302, response.headers
        return response.headers["Location"]


def build_repos(root: MirrorRoot) -> tuple[str, str]:
    commit = root.commit(REPO, FILES, message="initial")
    feature = root.commit(REPO, {"config.json": FEATURE_CONFIG}, branch="feature/x", parent=commit)
    root.create_repo(PRIVATE, private=True, tokens=[PRIVATE_TOKEN])
    root.commit(PRIVATE, {"config.json": b"{}", "weights.gguf": WEIGHTS})
    root.create_repo(GATED, gated="manual", tokens=[GATED_TOKEN])
    root.commit(GATED, {"config.json": b"{}", "weights.gguf": WEIGHTS})
    root.create_repo(DISABLED, disabled=True)
    root.commit(DISABLED, {"config.json": b"{}"})
    return commit, feature


@pytest.fixture
def hub(mirror_root: MirrorRoot, mirror: MirrorServer) -> Iterator[Hub]:
    commit, feature = build_repos(mirror_root)
    with httpx2.Client(follow_redirects=False, timeout=10) as client:
        yield Hub(mirror_root, mirror, client, commit, feature)


def raw_get(server: MirrorServer, target: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``target`` exactly as written: no client-side normalisation of dots or escapes."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


# -- resolve: plain git files and LFS files (§3.2) -----------------------------------------------------


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize("path", ["config.json", "sub/dir/nested.txt", "\u6a21\u578b.txt"])
def test_resolve_plain_file_is_served_in_place_with_git_etag(hub: Hub, method: str, path: str) -> None:
    data = FILES[path]
    response = hub.get(f"/{REPO}/resolve/main/{path}", method=method)

    assert response.status_code == 200
    assert response.headers["X-Repo-Commit"] == hub.commit
    assert response.headers["ETag"] == f'"{git_blob_sha1(data)}"'
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.content == (data if method == "GET" else b"")


# NTFS refuses control characters and '"' in a file name.
_NTFS_REFUSES = pytest.mark.posix("a file name with a newline, a tab or a quote")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("new\nline.txt", marks=_NTFS_REFUSES),
        pytest.param('quote".txt', marks=_NTFS_REFUSES),
        pytest.param("tab\there.txt", marks=_NTFS_REFUSES),
        "\u6a21\u578b.txt",
    ],
)
def test_any_file_name_gets_a_well_formed_content_disposition(hub: Hub, name: str) -> None:
    hub.root.commit("org/names", {name: b"odd"})

    response = hub.get(f"/org/names/resolve/main/{quote(name)}")

    assert response.status_code == 200
    assert response.content == b"odd"
    disposition = response.headers["Content-Disposition"]
    assert f"filename*=UTF-8''{quote(name)};" in disposition
    assert all(" " <= c <= "~" for c in disposition)
    assert disposition.count('"') == 2


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_resolve_lfs_file_redirects_to_cdn_origin(hub: Hub, method: str) -> None:
    response = hub.get(f"/{REPO}/resolve/main/weights.gguf", method=method)

    assert response.status_code == 302
    assert response.headers["X-Repo-Commit"] == hub.commit
    assert response.headers["X-Linked-Etag"] == f'"{hashlib.sha256(WEIGHTS).hexdigest()}"'
    assert response.headers["X-Linked-Size"] == str(len(WEIGHTS))
    location = urlsplit(response.headers["Location"])
    api = urlsplit(hub.server.url)
    assert location.scheme == "http"
    assert location.hostname == api.hostname
    assert location.port == hub.server.cdn_port
    assert location.port != api.port


def test_cdn_location_serves_lfs_bytes(hub: Hub) -> None:
    response = hub.client.get(hub.cdn_location("weights.gguf"))

    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(WEIGHTS))
    assert response.content == WEIGHTS


# -- Range (§3.3) -----------------------------------------------------------------------------------


def file_url(hub: Hub, where: str) -> tuple[str, bytes]:
    """A URL serving bytes in place: a plain file on /resolve, or an LFS file on the CDN."""
    if where == "resolve":
        return f"{hub.server.url}/{REPO}/resolve/main/notes.txt", NOTES
    return hub.cdn_location("weights.gguf"), WEIGHTS


@pytest.mark.parametrize("where", ["resolve", "cdn"])
@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=0-0", 0, 0),
        ("bytes=100-", 100, None),
        ("bytes=-50", -50, None),
        ("bytes=1000-99999999", 1000, None),  # an end past the file is clamped to its last byte
    ],
)
def test_range_request_gives_206_with_exact_bytes(
    hub: Hub, where: str, header: str, first: int, last: int | None
) -> None:
    url, data = file_url(hub, where)
    expected = data[first : None if last is None else last + 1]
    start = first % len(data)

    response = hub.client.get(url, headers={"Range": header})

    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"
    assert response.headers["Content-Length"] == str(len(expected))
    assert response.content == expected


@pytest.mark.parametrize("where", ["resolve", "cdn"])
def test_range_starting_past_the_end_is_416(hub: Hub, where: str) -> None:
    url, data = file_url(hub, where)

    response = hub.client.get(url, headers={"Range": f"bytes={len(data)}-"})

    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"


# -- revisions (§1) -----------------------------------------------------------------------------------


def test_percent_encoded_revision_with_slash_resolves(hub: Hub) -> None:
    resolved = hub.get(f"/{REPO}/resolve/feature%2Fx/config.json")
    info = hub.get(f"/api/models/{REPO}/revision/feature%2Fx")
    tree = hub.get(f"/api/models/{REPO}/tree/feature%2Fx")

    assert resolved.status_code == 200
    assert resolved.headers["X-Repo-Commit"] == hub.feature_commit
    assert resolved.content == FEATURE_CONFIG
    assert info.json()["sha"] == hub.feature_commit
    assert tree.status_code == 200
    assert {e["path"] for e in tree.json()} == {
        "config.json",
        "notes.txt",
        "weights.gguf",
        "sub",
        "\u6a21\u578b.txt",
    }


# -- signed CDN URLs -------------------------------------------------------------------------------------


def tamper(url: str, how: str) -> str:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    path = parts.path
    if how == "flipped-sig":
        query["sig"] = ("0" if query["sig"][0] != "0" else "1") + query["sig"][1:]
    elif how == "missing-sig":
        del query["sig"]
    elif how == "empty-sig":
        query["sig"] = ""
    elif how == "later-expiry":
        query["expires"] = str(int(query["expires"]) + 1)
    elif how == "other-file":
        path = path.rsplit("/", 1)[0] + "/config.json"
    elif how == "other-repo":
        path = path.replace(f"/{PRIVATE}/", f"/{GATED}/")
    return parts._replace(path=path, query=urlencode(query)).geturl()


@pytest.mark.parametrize(
    "how", ["flipped-sig", "missing-sig", "empty-sig", "later-expiry", "other-file", "other-repo"]
)
def test_cdn_refuses_tampered_or_unsigned_urls(hub: Hub, how: str) -> None:
    # The CDN gets no token (the client drops it cross-origin): the signature alone guards
    # the bytes of private and gated repos.
    location = hub.cdn_location("weights.gguf", repo=PRIVATE, token=PRIVATE_TOKEN)
    assert hub.client.get(location).status_code == 200

    response = hub.client.get(tamper(location, how))

    assert response.status_code == 403
    assert response.content != WEIGHTS


# -- errors (§5.1) ------------------------------------------------------------------------------------

ERROR_CASES = [
    # id, path, token, status, X-Error-Code, text the message contains
    ("unknown-repo-info", "/api/models/org/nope", None, 401, "RepoNotFound", "Repository not found"),
    ("unknown-repo-resolve", "/org/nope/resolve/main/config.json", None, 401, "RepoNotFound", "not found"),
    (
        "unknown-revision",
        f"/{REPO}/resolve/nope/config.json",
        None,
        404,
        "RevisionNotFound",
        "Invalid rev id: nope",
    ),
    ("unknown-revision-info", f"/api/models/{REPO}/revision/nope", None, 404, "RevisionNotFound", "nope"),
    ("missing-file", f"/{REPO}/resolve/main/missing.bin", None, 404, "EntryNotFound", "missing.bin"),
    ("missing-tree-path", f"/api/models/{REPO}/tree/main/nope", None, 404, "EntryNotFound", "nope"),
    ("private-anonymous-info", f"/api/models/{PRIVATE}", None, 401, "RepoNotFound", "not found"),
    (
        "private-anonymous-resolve",
        f"/{PRIVATE}/resolve/main/config.json",
        None,
        401,
        "RepoNotFound",
        "not found",
    ),
    ("private-other-token", f"/api/models/{PRIVATE}", GATED_TOKEN, 404, "RepoNotFound", "not found"),
    (
        "private-other-token-resolve",
        f"/{PRIVATE}/resolve/main/config.json",
        GATED_TOKEN,
        404,
        "RepoNotFound",
        "",
    ),
    ("gated-anonymous", f"/{GATED}/resolve/main/config.json", None, 401, "GatedRepo", "Please log in"),
    (
        "gated-unapproved",
        f"/{GATED}/resolve/main/config.json",
        PRIVATE_TOKEN,
        403,
        "GatedRepo",
        "authorized list",
    ),
    ("gated-unapproved-lfs", f"/{GATED}/resolve/main/weights.gguf", PRIVATE_TOKEN, 403, "GatedRepo", ""),
    (
        "unknown-token",
        f"/api/models/{REPO}",
        "hf_nobody",
        401,
        None,
        "Invalid credentials in Authorization header",
    ),
    ("unknown-token-resolve", f"/{REPO}/resolve/main/config.json", "hf_nobody", 401, None, ""),
]


@pytest.mark.parametrize("method", ["HEAD", "GET"])
@pytest.mark.parametrize(
    ("path", "token", "status", "code", "text"),
    [pytest.param(*case[1:], id=case[0]) for case in ERROR_CASES],
)
def test_errors_carry_status_code_and_message(
    hub: Hub, method: str, path: str, token: str | None, status: int, code: str | None, text: str
) -> None:
    response = hub.get(path, method=method, token=token)

    assert response.status_code == status
    assert response.headers.get("X-Error-Code") == code
    message = response.headers["X-Error-Message"]
    assert text in message
    if code is None:  # the client matches these two messages exactly
        assert message in (
            "Invalid credentials in Authorization header",
            "Access to this resource is disabled.",
        )
    if method == "GET":
        assert response.json() == {"error": message}


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_missing_file_error_names_the_commit(hub: Hub, method: str) -> None:
    response = hub.get(f"/{REPO}/resolve/main/missing.bin", method=method)

    assert response.status_code == 404
    assert response.headers["X-Repo-Commit"] == hub.commit


@pytest.mark.parametrize(
    ("path", "token"),
    [
        (f"/{PRIVATE}/resolve/main/config.json", PRIVATE_TOKEN),
        (f"/{GATED}/resolve/main/config.json", GATED_TOKEN),
        (f"/api/models/{GATED}", None),  # gated metadata is public; only /resolve is gated
        (f"/api/models/{GATED}/tree/main", None),
    ],
)
def test_access_is_granted_to_the_right_token(hub: Hub, path: str, token: str | None) -> None:
    assert hub.get(path, token=token).status_code == 200


@pytest.mark.parametrize(
    "name",
    ["\u6a21\u578b-missing.bin", "a%0D%0ASet-Cookie:%20stolen=1", "a%0Ab", "config.json%00", "tab%09x"],
)
def test_error_for_any_file_name_is_a_well_formed_response(hub: Hub, name: str) -> None:
    # The name is echoed in X-Error-Message: it must neither break the header block nor add headers.
    response = hub.get(f"/{REPO}/resolve/main/{name}")

    assert response.status_code == 404
    assert response.headers["X-Error-Code"] == "EntryNotFound"
    assert response.headers["X-Repo-Commit"] == hub.commit
    assert "set-cookie" not in response.headers
    assert all(" " <= c <= "~" for c in response.headers["X-Error-Message"])


# -- tree pagination (§2.2) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query_path", "expected"),
    [
        (
            "main?recursive=true",
            {"config.json", "notes.txt", "weights.gguf", "sub", "sub/dir", "sub/dir/nested.txt",
             "sub/other.json", "\u6a21\u578b.txt"},
        ),
        ("main", {"config.json", "notes.txt", "weights.gguf", "sub", "\u6a21\u578b.txt"}),
        ("feature%2Fx/sub?recursive=true&expand=false", {"sub/dir", "sub/dir/nested.txt", "sub/other.json"}),
    ],
)  # fmt: skip
def test_tree_pages_link_absolute_next_urls_until_done(
    mirror_root: MirrorRoot, query_path: str, expected: set[str]
) -> None:
    build_repos(mirror_root)
    paths: list[str] = []
    with (
        MirrorServer(mirror_root.root, page_size=2) as server,
        httpx2.Client(follow_redirects=False) as client,
    ):
        url: str | None = f"{server.url}/api/models/{REPO}/tree/{query_path}"
        while url is not None:
            response = client.get(url)
            assert response.status_code == 200
            page = response.json()
            assert len(page) <= 2
            paths.extend(entry["path"] for entry in page)
            url = None
            if "Link" in response.headers:
                assert response.headers["Link"].endswith('; rel="next"')
                url = response.links["next"]["url"]
                assert url.startswith(f"{server.url}/api/models/{REPO}/tree/")  # absolute, same origin

    assert sorted(paths) == sorted(expected)  # every entry, each exactly once


# -- paths-info (§2.3) -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["form", "json"])
def test_paths_info_accepts_form_and_json_and_omits_missing(hub: Hub, body: str) -> None:
    paths = ["config.json", "sub/dir", "missing.bin", "weights.gguf"]
    url = f"/api/models/{REPO}/paths-info/main"
    if body == "form":
        response = hub.get(url, method="POST", data={"paths": paths, "expand": "false"})
    else:
        response = hub.get(url, method="POST", json={"paths": paths, "expand": False})

    assert response.status_code == 200
    entries = {entry["path"]: entry for entry in response.json()}
    assert set(entries) == {"config.json", "sub/dir", "weights.gguf"}
    assert entries["config.json"] == {"type": "file", "oid": git_blob_sha1(CONFIG), "size": len(CONFIG),
                                      "path": "config.json"}  # fmt: skip
    assert entries["sub/dir"]["type"] == "directory"
    assert entries["weights.gguf"]["lfs"]["oid"] == hashlib.sha256(WEIGHTS).hexdigest()


def test_paths_info_sends_the_form_body_the_client_sends(hub: Hub) -> None:
    # What huggingface_hub sends, byte for byte: a urlencoded body with a repeated key.
    response = hub.get(
        f"/api/models/{REPO}/paths-info/feature%2Fx",
        method="POST",
        content=b"paths=config.json&paths=nope&expand=false",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert [(e["path"], e["oid"]) for e in response.json()] == [
        ("config.json", git_blob_sha1(FEATURE_CONFIG))
    ]


# -- path traversal ------------------------------------------------------------------------------------

SECRET = b"TOP SECRET: outside every commit\n"


@pytest.mark.parametrize(
    "target",
    [
        f"/{REPO}/resolve/main/..%2F..%2Fsecret.txt",
        f"/{REPO}/resolve/main/..%2F..%2F..%2Fsecret.txt",
        f"/{REPO}/resolve/main/%2e%2e/%2e%2e/secret.txt",
        f"/{REPO}/resolve/main/%2E%2E/%2E%2E/%2E%2E/secret.txt",
        f"/{REPO}/resolve/main/../../secret.txt",
        f"/{REPO}/resolve/main/sub/../../../secret.txt",
        f"/{REPO}/resolve/main/..%5C..%5Csecret.txt",
        f"/{REPO}/resolve/main/%2Fetc%2Fpasswd",
        f"/{REPO}/resolve/main//etc/passwd",
        f"/{REPO}/resolve/main/..%2F..%2Fetc%2Fpasswd",
        f"/{REPO}/resolve/main/secret.txt%00",
        f"/{REPO}/resolve/main/%00/../../secret.txt",
        f"/{REPO}/resolve/..%2F..%2F/secret.txt",
        f"/{REPO}/resolve/..%2F..%2F..%2F/secret.txt",
        "/org/..%2F/resolve/main/secret.txt",
        "/org/%2e%2e/resolve/main/secret.txt",
    ],
)
def test_resolve_never_serves_a_file_outside_the_commit(hub: Hub, target: str) -> None:
    repo_dir = hub.root.repo_dir(REPO)
    for place in (repo_dir, repo_dir.parent, hub.root.root):
        (place / "secret.txt").write_bytes(SECRET)

    status, headers, body = raw_get(hub.server, target)

    assert 400 <= status < 500
    assert "x-error-code" in headers
    assert b"TOP SECRET" not in body
    assert b"root:" not in body


# -- concurrency ------------------------------------------------------------------------------------


def test_many_concurrent_keep_alive_connections_all_succeed(hub: Hub) -> None:
    threads, rounds = 32, 6
    lfs_url = hub.cdn_location("weights.gguf")
    start = threading.Barrier(threads)

    def worker(_: int) -> list[bool]:
        results = []
        with httpx2.Client(follow_redirects=False, timeout=30) as client:
            start.wait(timeout=30)  # every connection is open at the same time
            for _round in range(rounds):
                config = client.get(f"{hub.server.url}/{REPO}/resolve/main/config.json")
                info = client.get(f"{hub.server.url}/api/models/{REPO}")
                lfs = client.get(lfs_url)
                results.append(
                    config.content == CONFIG and info.json()["sha"] == hub.commit and lfs.content == WEIGHTS
                )
        return results

    with ThreadPoolExecutor(threads) as pool:
        outcomes = [ok for results in pool.map(worker, range(threads)) for ok in results]

    assert outcomes == [True] * (threads * rounds)


def test_json_endpoints_return_json(hub: Hub) -> None:
    response = hub.get(f"/api/models/{REPO}/refs")

    assert response.headers["Content-Type"].startswith("application/json")
    refs = json.loads(response.content)
    assert {b["name"]: b["targetCommit"] for b in refs["branches"]} == {"main": hub.commit,
                                                                         "feature/x": hub.feature_commit}  # fmt: skip
    assert refs["tags"] == []
    assert refs["converts"] == []
