"""Bad input: fuzzed endpoint answers, path traversal wherever a name becomes a path, a tampered lock.

``models.yaml`` and ``models.lock`` text are fuzzed in tests/test_manifest.py and tests/test_lock.py;
request paths sent to the mirror in tests/mirror/test_protocol.py. This module fuzzes what an
endpoint answers (through a small real HTTP server) and walks every other place a name meets disk.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import cli, home, sha256, write_manifest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from alex_models import api
from alex_models._retry import RetryPolicy
from alex_models.errors import AlexModelsError, UserError
from alex_models.hub import HubRemote
from alex_models.lock import LockedFile, LockedModel, LockError, loads
from alex_models.manifest import ManifestError, ModelInput, parse_manifest
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.resolve import ResolveError, select
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_gguf

REPO = "org/fuzz"
SHA = "ab" * 32
COMMIT = "c0ffee" + "0" * 34


# -- a real local HTTP server that answers whatever the test sets ----------------------------------


class _Answers:
    """What the fuzz server answers: raw body bytes for the model-info and the tree endpoints."""

    def __init__(self) -> None:
        self.info = b"{}"
        self.tree = b"[]"
        self.requests = 0


class _Handler(BaseHTTPRequestHandler):
    answers: _Answers

    def do_GET(self) -> None:
        self.answers.requests += 1
        path = self.path.split("?", 1)[0]
        if path.startswith(f"/api/models/{REPO}/revision/"):
            body = self.answers.info
        elif path.startswith(f"/api/models/{REPO}/tree/"):
            body = self.answers.tree
        elif path == f"/api/models/{REPO}/auth-check":
            body = b"{}"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[tuple[HubRemote, _Answers]]:
    answers = _Answers()
    handler = type("Handler", (_Handler,), {"answers": answers})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    remote = HubRemote(f"http://127.0.0.1:{server.server_address[1]}", retry=RetryPolicy(attempts=1))
    try:
        yield remote, answers
    finally:
        remote.close()
        server.shutdown()
        server.server_close()
        thread.join()


# -- strategies for odd endpoint answers ---------------------------------------------------------

_json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_any_json = st.recursive(
    _json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
_odd_paths = st.sampled_from(
    [
        "model-Q4_K_M.gguf",
        "../escape.gguf",
        "sub/../../escape.gguf",
        "/etc/passwd",
        "C:/windows.gguf",
        "dir\\file.gguf",
        "nul\0byte.gguf",
        "x" * 300 + ".gguf",
        "./here.gguf",
        "line\nbreak.gguf",
        "a//b.gguf",
        "",
        "MODEL.gguf",
        "model.gguf",
    ]
) | st.text(max_size=40)
_odd_sha256 = st.sampled_from([SHA, SHA.upper(), "zz" * 32, SHA[:-1], "", "ab" * 33]) | st.text(max_size=70)
_odd_size = st.sampled_from([0, 1, -1, -(2**63), 2**64, 1.5, "12", None, True]) | st.integers()


def _sibling() -> st.SearchStrategy[Any]:
    lfs = st.none() | st.fixed_dictionaries(
        {"sha256": _odd_sha256 | _any_json, "size": _odd_size, "pointerSize": st.integers(0, 200)}
    )
    good = st.fixed_dictionaries(
        {"rfilename": _odd_paths | _any_json, "size": _odd_size | _any_json},
        optional={"lfs": lfs | _any_json, "blobId": st.text(max_size=40)},
    )
    return good | _any_json


def _tree_entry() -> st.SearchStrategy[Any]:
    lfs = st.none() | st.fixed_dictionaries({"oid": _odd_sha256, "size": _odd_size, "pointerSize": _odd_size})
    entry = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["file", "directory", "odd"]),
            "path": _odd_paths | _any_json,
            "oid": st.text(max_size=40),
        },
        optional={"size": _odd_size, "lfs": lfs | _any_json},
    )
    return entry | _any_json


_commit = st.sampled_from([COMMIT, COMMIT.upper(), COMMIT[:-1], "", "main"]) | _any_json
_model_info = st.fixed_dictionaries(
    {
        "id": st.just(REPO) | _any_json,
        "sha": _commit,
        "siblings": st.lists(_sibling(), max_size=6) | _any_json,
    },
    optional={"gated": st.sampled_from([False, "auto", "manual"]) | _any_json, "private": _any_json},
)
_body = (
    _model_info.map(lambda value: json.dumps(value).encode())
    | _any_json.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=60)
)
_tree_body = st.lists(_tree_entry(), max_size=6).map(lambda value: json.dumps(value).encode()) | _body


# Well-typed answers with odd values: these get past huggingface_hub's parsing to our checks.
_plain_sibling = st.fixed_dictionaries(
    {"rfilename": _odd_paths, "size": st.integers(0, 2**40) | st.just(-1)},
    optional={
        "lfs": st.fixed_dictionaries(
            {
                "sha256": st.just(SHA) | _odd_sha256,
                "size": st.integers(0, 2**40),
                "pointerSize": st.integers(0, 200),
            }
        )
    },
)
_plain_info = st.fixed_dictionaries(
    {
        "id": st.just(REPO),
        "sha": st.sampled_from([COMMIT, COMMIT, COMMIT.upper(), "0" * 39]),
        "siblings": st.lists(_plain_sibling, max_size=6),
    }
).map(lambda value: json.dumps(value).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(info=_plain_info, tree=_tree_body)
def test_odd_file_entries_resolve_or_raise_an_alex_models_error(
    fuzz_server: tuple[HubRemote, _Answers], info: bytes, tree: bytes
) -> None:
    _snapshot_and_select(fuzz_server, info, tree)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(info=_body, tree=_tree_body)
def test_malformed_endpoint_json_raises_an_alex_models_error_or_resolves(
    fuzz_server: tuple[HubRemote, _Answers], info: bytes, tree: bytes
) -> None:
    _snapshot_and_select(fuzz_server, info, tree)


def _snapshot_and_select(fuzz_server: tuple[HubRemote, _Answers], info: bytes, tree: bytes) -> None:
    remote, answers = fuzz_server
    answers.info, answers.tree = info, tree
    error: AlexModelsError | None = None
    picked = []
    try:  # anything but an AlexModelsError propagates and fails the test, with its traceback
        snapshot = remote.snapshot(REPO, "main")
        picked = select("fuzz", ModelInput(repo=REPO, revision="main", files=["*"]), snapshot)
    except AlexModelsError as exc:
        error = exc
    if error is not None:
        event(type(error).__name__)
        assert error.message
        assert "\n" not in error.message  # one line
        return
    event(f"resolved {len(picked)} file(s)")
    for remote_file, _ in picked:  # what resolves is fit to become a path and a lock entry
        LockedFile(
            path=remote_file.path, role="file", size=remote_file.size, sha256=remote_file.sha256 or SHA
        )


# -- path traversal: every place a name becomes a path --------------------------------------------

BAD_NAMES = {
    "dotdot": "../x.gguf",
    "inner-dotdot": "a/../../x.gguf",
    "absolute": "/etc/x.gguf",
    "drive-letter": "C:/x.gguf",
    "drive-relative": "c:x.gguf",
    "backslash": "..\\x.gguf",
    "nul": "x\0.gguf",
    "long-segment": "x" * 256 + ".gguf",
    "dot-segment": "./x.gguf",
    "empty-segment": "a//x.gguf",
}
bad_names = pytest.mark.parametrize("bad", list(BAD_NAMES.values()), ids=list(BAD_NAMES))


def _manifest_text(entry: dict[str, object]) -> str:
    return json.dumps({"version": 1, "models": {"m": {"repo": "org/x", **entry}}})


@bad_names
@pytest.mark.parametrize("key", ["file", "files", "mmproj", "lora"])
def test_manifest_refuses_an_escaping_name_at_parse(bad: str, key: str) -> None:
    entries: dict[str, dict[str, object]] = {
        "file": {"file": bad},
        "files": {"files": [bad]},
        "mmproj": {"quant": "Q4_K_M", "mmproj": bad},
        "lora": {"quant": "Q4_K_M", "lora": [bad]},
    }
    entry = entries[key]

    with pytest.raises(ManifestError) as caught:
        parse_manifest(_manifest_text(entry))

    assert "\n" not in caught.value.message


def _locked(path: str = "model.gguf", *extra: str) -> LockedModel:
    return LockedModel(
        input=ModelInput(repo="org/x", revision="main", files=["*"]),
        source="hf",
        repo="org/x",
        revision="main",
        commit=COMMIT,
        files=[LockedFile(path=p, role="model", size=1, sha256=SHA) for p in (path, *extra)],
    )


@bad_names
def test_lock_refuses_an_escaping_path_at_load(bad: str) -> None:
    from alex_models.lock import LOCK_VERSION, Lock, dumps

    text = dumps(Lock(version=LOCK_VERSION, models={"m": _locked()}))
    assert text.count("path: model.gguf") == 1
    tampered = text.replace("path: model.gguf", f"path: {json.dumps(bad)}")

    with pytest.raises(LockError):
        loads(tampered)


@bad_names
def test_select_refuses_an_escaping_name_in_a_remote_listing(bad: str) -> None:
    from alex_models.remote import RemoteFile, RepoSnapshot

    snapshot = RepoSnapshot(repo="org/x", revision="main", commit=COMMIT, files=(RemoteFile(bad, 1, SHA),))

    with pytest.raises(ResolveError, match="refusing file name"):
        select("m", ModelInput(repo="org/x", revision="main", files=["*"]), snapshot)


@bad_names
def test_pull_refuses_an_escaping_file_argument_before_any_request(bad: str) -> None:
    # The endpoint is a closed port: a request would fail with a RemoteError instead.
    with pytest.raises(UserError, match="refusing file to pull"):
        api.pull("org/x", bad)


def test_mirror_request_paths_are_covered_in_the_mirror_protocol_tests() -> None:
    # Escaping request paths are refused by the mirror: tests/mirror/test_protocol.py, "path traversal".
    text = (Path(__file__).parents[1] / "mirror" / "test_protocol.py").read_text(encoding="utf-8")
    assert "# -- path traversal" in text
    assert "../../secret.txt" in text


@bad_names
def test_a_locked_file_with_an_escaping_path_cannot_be_constructed(bad: str) -> None:
    with pytest.raises(ValidationError):
        LockedFile(path=bad, role="model", size=1, sha256=SHA)


@bad_names
def test_view_path_refuses_an_escaping_path_even_past_validation(bad: str, tmp_path: Path) -> None:
    file = LockedFile.model_construct(path=bad, role="model", size=1, sha256=SHA)  # skips validation

    with pytest.raises(UserError, match="refusing locked file path"):
        Store(tmp_path / "store").view_path(_locked(), file)


def test_lock_refuses_two_paths_that_differ_only_in_case() -> None:
    with pytest.raises(ValidationError, match="differ only in case"):
        _locked("Model.gguf", "model.gguf")


def test_select_refuses_two_remote_names_that_differ_only_in_case() -> None:
    from alex_models.remote import RemoteFile, RepoSnapshot

    files = (RemoteFile("Model.gguf", 1, SHA), RemoteFile("model.gguf", 1, SHA))
    snapshot = RepoSnapshot(repo="org/x", revision="main", commit=COMMIT, files=files)

    with pytest.raises(ResolveError, match="differ only in case"):
        select("m", ModelInput(repo="org/x", revision="main", files=["*"]), snapshot)


# -- symlinks planted in the store -----------------------------------------------------------------


def _outside_blob(tmp_path: Path, data: bytes = b"outside bytes") -> tuple[Path, str]:
    outside = tmp_path / "outside.bin"
    outside.write_bytes(data)
    return outside, hashlib.sha256(data).hexdigest()


@pytest.mark.symlinks("a symlink planted in the store")
def test_a_blob_planted_as_a_symlink_is_not_trusted(tmp_path: Path) -> None:
    store = Store(tmp_path / "store").init()
    outside, digest = _outside_blob(tmp_path)
    store.blob_path(digest).parent.mkdir(parents=True)
    store.blob_path(digest).symlink_to(outside)

    assert not store.has_blob(digest, outside.stat().st_size)
    assert not store.verify_blob(digest, outside.stat().st_size)
    assert outside.read_bytes() == b"outside bytes"


@pytest.mark.symlinks("a symlink planted in the store")
def test_a_blob_in_a_symlinked_shard_folder_is_not_trusted(tmp_path: Path) -> None:
    store = Store(tmp_path / "store").init()
    outside, digest = _outside_blob(tmp_path)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / digest).write_bytes(outside.read_bytes())
    store.blob_path(digest).parent.symlink_to(folder, target_is_directory=True)

    assert not store.has_blob(digest, outside.stat().st_size)
    assert not store.verify_blob(digest, outside.stat().st_size)


@pytest.mark.symlinks("a symlink planted in the store")
def test_promote_never_renames_through_a_symlinked_shard_folder(tmp_path: Path) -> None:
    store = Store(tmp_path / "store").init()
    _, digest = _outside_blob(tmp_path)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    store.blob_path(digest).parent.symlink_to(folder, target_is_directory=True)
    partial = store.partial_path(digest)
    partial.write_bytes(b"outside bytes")

    with pytest.raises(UserError, match="a symlink inside the store"):
        store.promote(partial, digest)

    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("sub", ["blobs", "blobs/sha256", "tmp", "state", "llama.cpp"])
@pytest.mark.symlinks("a symlink planted in the store")
def test_store_init_refuses_a_store_folder_planted_as_a_symlink(tmp_path: Path, sub: str) -> None:
    home = tmp_path / "store"
    (home / sub).parent.mkdir(parents=True, exist_ok=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / sub).symlink_to(elsewhere, target_is_directory=True)

    with pytest.raises(UserError, match="a symlink inside the store"):
        Store(home).init()

    assert list(elsewhere.iterdir()) == []


# -- a real sync against a tampered lock or a store with planted symlinks ---------------------------


@dataclass(frozen=True)
class Synced:
    project: Path
    files: dict[str, bytes]
    commit: str


@pytest.fixture
def hub_repo(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Synced:
    """org/x with two small GGUFs; the manifest asks for model.gguf; nothing synced yet."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    files = {
        "model.gguf": write_tiny_gguf(tmp_path / "a.gguf", context_length=1001).read_bytes(),
        "other.gguf": write_tiny_gguf(tmp_path / "b.gguf", context_length=1002).read_bytes(),
    }
    commit = mirror_root.commit("org/x", files)
    write_manifest(project, {"m": {"repo": "org/x", "file": "model.gguf"}})
    return Synced(project, files, commit)


@pytest.fixture
def synced(hub_repo: Synced) -> Synced:
    """``hub_repo`` after one successful ``sync``."""
    result = cli(hub_repo.project, "sync")
    assert result.returncode == 0, result.stderr
    return hub_repo


def _view(synced: Synced, name: str) -> Path:
    return home() / "llama.cpp" / "hf" / "org" / "x" / synced.commit / name


def _views_hold_their_own_bytes(synced: Synced) -> bool:
    """Every file under the store's views holds exactly the repo's bytes for its own name."""
    views = [p for p in (home() / "llama.cpp").rglob("*") if p.is_file() and not p.name.startswith(".")]
    return all(p.read_bytes() == synced.files[p.name] for p in views)


def _edit_lock(project: Path, old: str, new: str) -> None:
    lock = project / "models.lock"
    text = lock.read_text(encoding="utf-8")
    assert text.count(old) == 1, (old, text)
    lock.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.slow
def test_frozen_sync_of_a_lock_with_an_edited_hash_exits_3_and_stores_nothing_under_it(
    synced: Synced,
) -> None:
    real = sha256(synced.files["model.gguf"])
    forged = sha256(b"not the model")
    _edit_lock(synced.project, f"sha256: {real}", f"sha256: {forged}")

    result = cli(synced.project, "sync", "--frozen")

    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert not Store(home()).blob_path(forged).exists()  # the old bytes never stand in for the new hash
    assert _views_hold_their_own_bytes(synced)


@pytest.mark.slow
def test_frozen_sync_of_a_lock_with_an_edited_size_exits_3_and_stores_nothing(synced: Synced) -> None:
    # The size check fires on the server's Content-Length, before any byte is hashed: a file of
    # another size than the lock pins is not the locked file, an integrity failure like a hash.
    size = len(synced.files["model.gguf"])
    _edit_lock(synced.project, f"size: {size}\n", f"size: {size + 1}\n")

    result = cli(synced.project, "sync", "--frozen")

    assert result.returncode == 3, result.stderr
    assert f"the server offers {size} bytes, the lock pins {size + 1}" in result.stderr
    assert "nothing was stored" in result.stderr
    assert "Traceback" not in result.stderr
    assert _views_hold_their_own_bytes(synced)


@pytest.mark.slow
def test_frozen_sync_of_a_lock_with_an_edited_path_exits_3_and_presents_no_view(hub_repo: Synced) -> None:
    assert cli(hub_repo.project, "lock").returncode == 0
    _edit_lock(hub_repo.project, "path: model.gguf", "path: other.gguf")

    result = cli(hub_repo.project, "sync", "--frozen")

    assert result.returncode == 3, result.stderr
    assert not _view(hub_repo, "other.gguf").exists()
    assert _views_hold_their_own_bytes(hub_repo)


@pytest.mark.slow
@pytest.mark.symlinks("a symlink planted in the store")
def test_sync_does_not_write_views_through_a_symlink_planted_in_the_views(
    hub_repo: Synced, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home() / "llama.cpp" / "hf").mkdir(parents=True)
    (home() / "llama.cpp" / "hf" / "org").symlink_to(elsewhere, target_is_directory=True)

    result = cli(hub_repo.project, "sync")

    assert result.returncode == 1, result.stderr
    assert "a symlink inside the store" in result.stderr
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
@pytest.mark.symlinks("a symlink planted in the store")
def test_sync_does_not_store_a_blob_through_a_symlinked_shard_folder(
    hub_repo: Synced, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    digest = sha256(hub_repo.files["model.gguf"])
    shard = Store(home()).blob_path(digest).parent
    shard.parent.mkdir(parents=True)
    shard.symlink_to(elsewhere, target_is_directory=True)

    result = cli(hub_repo.project, "sync")

    assert result.returncode == 1, result.stderr
    assert "a symlink inside the store" in result.stderr
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
@pytest.mark.symlinks("a symlink planted in the store")
def test_sync_replaces_a_blob_planted_as_a_symlink_with_verified_bytes(
    synced: Synced, tmp_path: Path
) -> None:
    data = synced.files["model.gguf"]
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(data)
    blob = Store(home()).blob_path(sha256(data))
    blob.chmod(0o644)
    blob.unlink()
    blob.symlink_to(outside)

    result = cli(synced.project, "sync", "--frozen")

    assert result.returncode == 0, result.stderr
    assert not blob.is_symlink()
    assert blob.read_bytes() == data
    assert outside.read_bytes() == data
    assert outside.stat().st_mode & 0o222


@pytest.mark.symlinks("a symlink planted in the store")
def test_gc_deletes_nothing_through_a_symlinked_shard_folder(tmp_path: Path) -> None:
    store = Store(home()).init()
    outside, digest = _outside_blob(tmp_path)
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / digest).write_bytes(outside.read_bytes())  # unreferenced by any lock: gc's to take
    store.blob_path(digest).parent.symlink_to(folder, target_is_directory=True)

    api.gc()

    assert (folder / digest).read_bytes() == b"outside bytes"
