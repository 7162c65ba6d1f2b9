"""The air-gapped bundle: ``bundle create`` on a synced project, ``bundle import`` into an empty
store, a bundle as a ``sync --from`` source; tampered, truncated, hostile and compressed tars.
Real files, the real mirror (its log says what went over the network), the installed CLI."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
from helpers import cli, since_settled, start, wait_for

from alex_models import api
from alex_models._units import human_size
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_gguf

NAMES = ("chat", "embed")


def ok(run: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert run.returncode == 0, run.stderr
    return run


def make_project(
    folder: Path, mirror_root: MirrorRoot, tmp_path: Path, *, padding: int = 0
) -> dict[str, bytes]:
    """Two models on the mirror and a manifest naming both; the bytes of each, by model."""
    files = {}
    for n, name in enumerate(NAMES, start=1000):
        data = write_tiny_gguf(tmp_path / f"{name}.gguf", context_length=n, padding=padding).read_bytes()
        mirror_root.commit(f"org/{name}", {f"{name}-Q4_K_M.gguf": data})
        files[name] = data
    manifest = {"version": 1, "models": {name: {"repo": f"org/{name}", "quant": "Q4_K_M"} for name in NAMES}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.yaml").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return files


@pytest.fixture
def built(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, bytes]]:
    """A connected project, synced from the mirror, and its bundle at ``tmp_path/models.tar``."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    files = make_project(folder, mirror_root, tmp_path)
    api.sync(folder / "models.yaml")  # in-process: setting up, not what is tested
    api.bundle_create(tmp_path / "models.tar", folder / "models.yaml")
    return folder, files


def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An air-gapped host: an empty folder and an empty store of its own."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.setenv("ALEX_MODELS_HOME", str(tmp_path / "site-store"))
    return folder


def blob_member(bundle: Path) -> tarfile.TarInfo:
    """The first blob member of a bundle."""
    with tarfile.open(bundle) as tar:
        return next(m for m in tar.getmembers() if m.name.startswith("blobs/"))


def leftovers(store: Path) -> list[str]:
    """Blobs and partial files in a store."""
    return sorted(
        str(p.relative_to(store)) for p in [*store.glob("blobs/**/*"), *store.glob("tmp/*")] if p.is_file()
    )


def test_create_writes_lock_manifest_and_blobs_like_a_remote_and_says_sizes(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    files = make_project(folder, mirror_root, tmp_path)
    api.sync(folder / "models.yaml")
    out = tmp_path / "models.tar"

    report = json.loads(ok(cli(folder, "bundle", "create", str(out), "--json")).stdout)
    whole = out.stat().st_size
    created = ok(cli(folder, "bundle", "create", str(out), "--only", "chat"))
    text = created.stdout

    lock_text = (folder / "models.lock").read_bytes()
    stem = f"locks/{hashlib.sha256(lock_text).hexdigest()}"
    digests = [hashlib.sha256(files[name]).hexdigest() for name in NAMES]
    assert report["lock"] == f"{stem}.lock"
    assert report["manifest"] == f"{stem}.yaml"
    assert report["bytes"] == whole
    assert sorted(b["bytes"] for b in report["blobs"]) == sorted(len(d) for d in files.values())
    with tarfile.open(out) as tar:  # the --only chat bundle: the whole lock, one blob
        assert tar.getnames() == [
            f"{stem}.lock",
            f"{stem}.yaml",
            f"blobs/sha256/{digests[0][:2]}/{digests[0]}",
        ]
        assert tar.extractfile(f"{stem}.lock").read() == lock_text  # type: ignore[union-attr]
    assert f"added: org/chat/chat-Q4_K_M.gguf ({human_size(len(files['chat']))})" in text
    assert f"the lock and models.yaml, 1 blob(s) ({human_size(len(files['chat']))}); " in text
    assert f"{human_size(out.stat().st_size)} in all" in text
    assert "embed" not in text
    chat = f"org/chat/chat-Q4_K_M.gguf ({human_size(len(files['chat']))})"
    assert created.stderr.splitlines() == [
        f"adding {chat}",
        "added org/chat/chat-Q4_K_M.gguf",
    ]  # a log's lines
    assert ok(cli(folder, "bundle", "create", str(out), "--quiet")).stdout == ""
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".models.tar")] == []


def test_import_into_an_empty_store_then_sync_frozen_offline_needs_nothing_else(
    built: tuple[Path, dict[str, bytes]],
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, files = built
    host = site(tmp_path, monkeypatch)
    since_settled(mirror)
    mirror.clear_log()

    report = json.loads(
        ok(cli(host, "bundle", "import", str(tmp_path / "models.tar"), "--to", str(host), "--json")).stdout
    )

    assert sorted(b["bytes"] for b in report["imported"]) == sorted(len(d) for d in files.values())
    assert report["complete"] == list(NAMES)
    assert (host / "models.lock").read_bytes() == (folder / "models.lock").read_bytes()
    assert (host / "models.yaml").read_bytes() == (folder / "models.yaml").read_bytes()
    ok(cli(host, "sync", "--frozen", "--offline"))
    ok(cli(host, "verify"))
    assert since_settled(mirror) == [], "nothing came from the mirror"
    store = Store(tmp_path / "site-store")
    assert str(host / "models.lock") in store.registered_locks()  # gc keeps what was imported


def test_a_second_import_skips_every_blob(
    built: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, files = built
    host = site(tmp_path, monkeypatch)
    first = ok(cli(host, "bundle", "import", str(tmp_path / "models.tar")))

    again = ok(cli(host, "bundle", "import", str(tmp_path / "models.tar")))
    chat = f"org/chat/chat-Q4_K_M.gguf ({human_size(len(files['chat']))})"
    assert f"importing {chat}" in first.stderr.splitlines()  # a line per blob in a log
    assert "stored org/chat/chat-Q4_K_M.gguf" in first.stderr.splitlines()
    assert again.stderr == ""  # nothing imported: no progress

    assert "imported:" not in again.stdout
    assert f"skipped: org/chat/chat-Q4_K_M.gguf ({human_size(len(files['chat']))}, already in the store)" in (
        again.stdout
    )
    assert ": 0 blob(s) (0 B), 2 already there" in again.stdout
    assert not (host / "models.lock").exists(), "without --to, nothing is written outside the store"


def test_sync_from_a_bundle_url_with_no_hub_reads_the_tar_in_place(
    built: tuple[Path, dict[str, bytes]],
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder, files = built
    host = site(tmp_path, monkeypatch)
    (host / "models.lock").write_bytes((folder / "models.lock").read_bytes())
    url = (tmp_path / "models.tar").as_uri()
    since_settled(mirror)
    mirror.clear_log()

    held = json.loads(ok(cli(host, "status", "--remote", url, "--json")).stdout)
    ok(cli(host, "sync", "--frozen", "--from", url, "--no-hub"))

    assert held["complete"] is True
    assert since_settled(mirror) == [], "nothing came from the mirror"
    store = Store(tmp_path / "site-store")
    assert all(store.blob_path(hashlib.sha256(d).hexdigest()).read_bytes() == d for d in files.values())
    pushed = cli(folder, "push", url)
    assert pushed.returncode == 1
    assert "is a bundle, which push cannot add to" in pushed.stderr


def test_a_flipped_byte_in_a_blob_is_exit_3_naming_it_and_nothing_is_stored(
    built: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "models.tar"
    member = blob_member(bundle)
    data = bytearray(bundle.read_bytes())
    data[member.offset_data + member.size // 2] ^= 0x01
    bundle.write_bytes(bytes(data))
    host = site(tmp_path, monkeypatch)

    run = cli(host, "bundle", "import", str(bundle))

    assert run.returncode == 3, run.stderr
    assert f"{member.name} (org/" in run.stderr
    assert "holds other bytes than its name says" in run.stderr
    assert leftovers(tmp_path / "site-store") == []


def test_an_edited_lock_in_the_bundle_is_exit_3_before_any_blob_is_read(
    built: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "models.tar"
    with tarfile.open(bundle) as tar:
        lock = tar.getmembers()[0]
    data = bytearray(bundle.read_bytes())
    data[lock.offset_data] ^= 0x01  # the first byte of its comment line: still a valid lock
    bundle.write_bytes(bytes(data))
    host = site(tmp_path, monkeypatch)

    run = cli(host, "bundle", "import", str(bundle), "--to", str(host))

    assert run.returncode == 3, run.stderr
    assert f"{bundle}: {lock.name} holds another lock than its name says" in run.stderr
    assert leftovers(tmp_path / "site-store") == []
    assert list(host.iterdir()) == []


@pytest.mark.parametrize("cut", ["inside a blob", "between members"])
def test_a_truncated_bundle_is_exit_3_and_leaves_no_partial_blob(
    cut: str, built: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "models.tar"
    member = blob_member(bundle)
    end = member.offset_data + -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    bundle.write_bytes(bundle.read_bytes()[: member.offset_data + 100 if cut == "inside a blob" else end])
    host = site(tmp_path, monkeypatch)

    run = cli(host, "bundle", "import", str(bundle))
    # sync --from indexes the whole tar before reading any blob: either cut is found there too
    synced = cli(
        host, "sync", "--from", bundle.as_uri(), "--no-hub", "-f", str(tmp_path / "ci" / "models.yaml")
    )

    assert run.returncode == 3, run.stderr
    assert "is truncated or damaged" in run.stderr
    assert synced.returncode == 3, synced.stderr
    assert "is truncated or damaged" in synced.stderr
    store = tmp_path / "site-store"
    assert not [p for p in store.glob("tmp/*") if p.is_file()], "no partial file is left"
    # the blob before a cut between members is whole and verified: kept, and a rerun skips it
    assert leftovers(store) == ([] if cut == "inside a blob" else [member.name])


def hostile_tar(path: Path, member: tarfile.TarInfo) -> Path:
    with tarfile.open(path, "w") as tar:
        tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isreg() else None)
    return path


@pytest.mark.parametrize(
    ("name", "kind", "said"),
    [
        ("../../escaped", tarfile.REGTYPE, "it has a '..' segment"),
        ("/srv/escaped", tarfile.REGTYPE, "it is absolute"),
        ("blobs/sha256/ab/link", tarfile.SYMTYPE, "it is a symbolic link"),
    ],
)
def test_a_hostile_member_is_refused_in_one_line_and_nothing_is_written(
    name: str, kind: bytes, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    member = tarfile.TarInfo(name)
    member.type = kind
    member.size = 4 if kind == tarfile.REGTYPE else 0
    member.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
    bundle = hostile_tar(tmp_path / "hostile.tar", member)
    host = site(tmp_path, monkeypatch)

    run = cli(host, "bundle", "import", str(bundle), "--to", str(host))

    assert run.returncode == 1, run.stderr
    assert f"refusing {bundle}: member {name!r}: {said}" in run.stderr
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env", "hostile.tar", "site", "site-store"]
    assert list(host.iterdir()) == []
    assert leftovers(tmp_path / "site-store") == []


def test_create_with_a_model_not_synced_names_it_and_writes_no_tar(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    make_project(folder, mirror_root, tmp_path)
    api.sync(folder / "models.yaml", api.SyncOptions(only=("chat",)))
    out = tmp_path / "models.tar"

    run = cli(folder, "bundle", "create", str(out))

    assert run.returncode == 1, run.stderr
    assert "model(s) embed are not synced into" in run.stderr
    assert f"no {out} was written" in run.stderr
    assert "run 'alex-models sync' first" in run.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".models.tar", "models.tar"))]


def test_a_compressed_bundle_is_refused_naming_the_compression(
    built: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = built
    packed = tmp_path / "models.tar.gz"
    packed.write_bytes(gzip.compress((tmp_path / "models.tar").read_bytes()))
    host = site(tmp_path, monkeypatch)
    (host / "models.lock").write_bytes((folder / "models.lock").read_bytes())

    imported = cli(host, "bundle", "import", str(packed))
    synced = cli(host, "sync", "--frozen", "--from", packed.as_uri(), "--no-hub")

    for run in (imported, synced):
        assert run.returncode == 1, run.stderr
        assert f"{packed} is gzip-compressed; a bundle is a plain tar" in run.stderr


def growing(folder: Path, pattern: str) -> bool:
    """Whether a file matching ``pattern`` in ``folder`` has bytes (it may vanish meanwhile)."""
    for path in folder.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size:
                return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_create_or_import_leaves_nothing_half_written_and_a_rerun_completes(
    signum: int,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    make_project(folder, mirror_root, tmp_path, padding=400 * 1024 * 1024)
    api.sync(folder / "models.yaml")
    bundle = tmp_path / "models.tar"

    creating, said = start(folder, "bundle", "create", str(bundle))
    wait_for(lambda: growing(tmp_path, ".models.tar.*.part"), "the bundle being written")
    creating.send_signal(signum)
    creating.wait(timeout=30)

    assert creating.returncode == 128 + signum, said.read_text()
    assert f"interrupted; no {bundle} was written" in said.read_text()
    assert not [p.name for p in tmp_path.iterdir() if "models.tar" in p.name]

    ok(cli(folder, "bundle", "create", str(bundle)))
    host = site(tmp_path, monkeypatch)
    store = tmp_path / "site-store"
    importing, said = start(host, "bundle", "import", str(bundle))
    wait_for(lambda: growing(store / "tmp", "*.part"), "a partial blob")
    importing.send_signal(signum)
    importing.wait(timeout=30)

    assert importing.returncode == 128 + signum, said.read_text()
    assert "none half-written; run the import again for the rest" in said.read_text()
    assert not list(store.glob("tmp/*"))
    ok(cli(host, "bundle", "import", str(bundle)))
    ok(cli(host, "verify", "-f", str(folder / "models.yaml")))
