"""The content-addressed store: blobs and their stat records, promotion, views, the lock registry."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from alex_models.errors import UserError
from alex_models.lock import LockedFile, LockedModel
from alex_models.manifest import ModelInput
from alex_models.store import Store

DATA = b"weights " * 1000
SHA = hashlib.sha256(DATA).hexdigest()
COMMIT = "c" * 40
URL = "https://example.org/models/draft.gguf"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store").init()


def put_blob(store: Store, data: bytes = DATA) -> Path:
    """A blob entered the way the downloader enters one: a partial file, then ``promote``."""
    sha256 = hashlib.sha256(data).hexdigest()
    partial = store.partial_path(sha256)
    partial.write_bytes(data)
    return store.promote(partial, sha256)


def hf_entry(path: str = "model.gguf") -> tuple[LockedModel, LockedFile]:
    file = LockedFile(path=path, role="model", size=len(DATA), sha256=SHA)
    wanted = ModelInput(repo="org/model", revision="main", file=path)
    entry = LockedModel(
        input=wanted, source="hf", repo="org/model", revision="main", commit=COMMIT, files=[file]
    )
    return entry, file


def url_entry() -> tuple[LockedModel, LockedFile]:
    file = LockedFile(path="draft.gguf", role="model", size=len(DATA), sha256=SHA)
    return LockedModel(input=ModelInput(url=URL), source="url", url=URL, files=[file]), file


def test_init_writes_cachedir_tag_and_folders(tmp_path: Path) -> None:
    store = Store(tmp_path / "new-home").init()

    tag = (store.home / "CACHEDIR.TAG").read_text(encoding="ascii")
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55\n")
    for sub in ("blobs/sha256", "tmp", "locks", "state/verified", "llama.cpp"):
        assert (store.home / sub).is_dir(), sub
    assert Store(store.home).init().home == store.home, "init is idempotent"


def test_promote_makes_blob_read_only_and_removes_progress(store: Store) -> None:
    partial = store.partial_path(SHA)
    partial.write_bytes(DATA)
    store.progress_path(SHA).write_text("{}", encoding="utf-8")

    blob = store.promote(partial, SHA)

    assert blob == store.blob_path(SHA)
    assert blob.read_bytes() == DATA
    assert stat.S_IMODE(blob.stat().st_mode) & 0o222 == 0
    assert not partial.exists()
    assert not store.progress_path(SHA).exists()
    assert store.has_blob(SHA, len(DATA))


def test_has_blob_trusts_the_stat_record_and_verify_blob_does_not(store: Store) -> None:
    blob = put_blob(store)
    before = blob.stat()
    # Rewrite the bytes in place: same size, same inode, and the old mtime put back.
    blob.chmod(0o644)
    with blob.open("r+b") as f:
        f.write(b"X")
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))
    blob.chmod(0o444)
    assert blob.read_bytes() != DATA

    assert store.has_blob(SHA, len(DATA)) is True, "the stat record is trusted: no re-hash"
    assert store.verify_blob(SHA, len(DATA)) is False, "verify always re-hashes"


def test_has_blob_rehashes_a_blob_without_record(store: Store) -> None:
    blob = store.blob_path(SHA)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(DATA)  # copied in by hand: no stat record
    record = store.home / "state" / "verified" / SHA
    assert not record.exists()

    assert store.has_blob(SHA, len(DATA)) is True

    assert record.exists(), "a blob that hashed right gets a record"


def test_has_blob_discards_a_wrong_blob_without_record(store: Store) -> None:
    blob = store.blob_path(SHA)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"Y" * len(DATA))  # right size, wrong bytes

    assert store.has_blob(SHA, len(DATA)) is False

    assert not blob.exists()


def test_has_blob_is_false_for_a_missing_or_wrong_sized_blob(store: Store) -> None:
    assert store.has_blob(SHA, len(DATA)) is False
    put_blob(store)
    assert store.has_blob(SHA, len(DATA) + 1) is False


def test_link_view_hard_links_the_blob_and_is_idempotent(store: Store) -> None:
    blob = put_blob(store)
    entry, file = hf_entry("sub/model.gguf")
    view = store.view_path(entry, file)

    store.link_view(view, SHA)
    store.link_view(view, SHA)

    assert not view.is_symlink()
    assert view.stat().st_ino == blob.stat().st_ino
    assert view.read_bytes() == DATA
    assert sorted(p.name for p in view.parent.iterdir()) == ["model.gguf"], "no temporary left behind"


@pytest.mark.parametrize("planted", ["hf", f"hf/org/model/{COMMIT}"])
@pytest.mark.symlinks("a symlink planted in the store")
def test_link_view_refuses_a_symlink_leading_out_of_the_store(
    store: Store, tmp_path: Path, planted: str
) -> None:
    put_blob(store)
    outside = tmp_path / "outside"
    outside.mkdir()
    link = store.home / "llama.cpp" / planted
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside, target_is_directory=True)
    entry, file = hf_entry()
    view = store.view_path(entry, file)

    with pytest.raises(UserError, match="a symlink inside the store leads elsewhere"):
        store.link_view(view, SHA)

    assert list(outside.iterdir()) == [], "nothing was written outside the store"


def test_view_path_of_hf_and_url_entries(store: Store) -> None:
    entry, file = hf_entry("sub/model.gguf")
    assert store.view_path(entry, file) == (
        store.home / "llama.cpp" / "hf" / "org" / "model" / COMMIT / "sub" / "model.gguf"
    )
    entry, file = url_entry()
    assert store.view_path(entry, file) == store.home / "llama.cpp" / "url" / SHA / "draft.gguf"


def test_registered_locks_round_trip(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store.registered_locks() == []
    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "a" / "models.lock", tmp_path / "b" / "models.lock"

    store.register_lock(Path("a/models.lock"))  # a relative path is remembered as absolute
    store.register_lock(second)
    store.register_lock(second)

    assert store.registered_locks() == [str(first), str(second)]
    assert Store(store.home).registered_locks() == [str(first), str(second)], "kept on disk"

    store.set_registered_locks([str(second)])

    assert store.registered_locks() == [str(second)]


def test_pull_locks_of_different_files_never_share_a_name(tmp_path: Path) -> None:
    """'a/b.gguf' and 'a--b.gguf' once both became 'org--repo--a--b.gguf.lock': pulling one
    replaced the other's lock, and gc then removed a file the user had pulled."""
    store = Store(tmp_path)
    names = {store.pull_lock_path("org/repo", file).name for file in ("a/b.gguf", "a--b.gguf", "a%2Fb.gguf")}
    assert len(names) == 3
    assert store.pull_lock_path("org/repo", "a/b.gguf").name == "org--repo--a%2Fb.gguf.lock"
