"""``sync --hf-cache``: the real huggingface_hub, offline, finds exactly the locked bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from huggingface_hub import hf_hub_download, snapshot_download

from alex_models import api
from alex_models.hubfiles import git_blob_sha1
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

REPO = "org/tiny-GGUF"


@dataclass(frozen=True)
class Synced:
    cache: Path
    files: dict[str, bytes]


@pytest.fixture
def synced(
    tmp_path: Path, mirror_root: MirrorRoot, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> Synced:
    """A project whose GGUF, split shards and a small git file are synced with --hf-cache."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    source = tmp_path / "src"
    source.mkdir()
    files: dict[str, bytes | Path] = {
        "tiny-Q4_K_M.gguf": write_tiny_gguf(source / "a.gguf", padding=4096),
        "split/tiny-Q8_0-00001-of-00002.gguf": write_tiny_gguf(source / "b1.gguf", split=(1, 2)),
        "split/tiny-Q8_0-00002-of-00002.gguf": write_tiny_gguf(source / "b2.gguf", split=(2, 2)),
        "config.json": b'{"architectures": ["tiny"]}',
    }
    mirror_root.commit(REPO, files)
    project = tmp_path / "project"
    project.mkdir()
    (project / "models.yaml").write_text(
        "version: 1\nmodels:\n"
        f"  small: {{repo: {REPO}, quant: Q4_K_M}}\n"
        f"  big: {{repo: {REPO}, quant: Q8_0}}\n"
        f"  config: {{repo: {REPO}, file: config.json}}\n"
    )
    cache = tmp_path / "hf-cache"
    api.sync(project / "models.yaml", api.SyncOptions(hf_cache=cache))
    return Synced(cache, {path: v.read_bytes() if isinstance(v, Path) else v for path, v in files.items()})


def test_offline_hf_hub_download_returns_the_synced_bytes(synced: Synced) -> None:
    for path, content in synced.files.items():
        found = hf_hub_download(REPO, path, revision="main", cache_dir=synced.cache, local_files_only=True)
        assert Path(found).read_bytes() == content


def test_offline_snapshot_download_finds_every_synced_file(synced: Synced) -> None:
    folder = Path(snapshot_download(REPO, revision="main", cache_dir=synced.cache, local_files_only=True))
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert found == [
        "config.json",
        "split/tiny-Q8_0-00001-of-00002.gguf",
        "split/tiny-Q8_0-00002-of-00002.gguf",
        "tiny-Q4_K_M.gguf",
    ]


def test_cache_blobs_are_links_to_the_store_not_copies(synced: Synced, isolated_home: Path) -> None:
    folder = synced.cache / "models--org--tiny-GGUF"
    store_blobs = {
        p.stat().st_ino for p in (isolated_home / "alex-models" / "blobs").rglob("*") if p.is_file()
    }
    cache_blobs = list((folder / "blobs").iterdir())
    assert len(cache_blobs) == 4
    assert {p.stat().st_ino for p in cache_blobs} <= store_blobs


@pytest.mark.symlinks("the snapshots' symlinks (hard links where symlinks are refused)")
def test_cache_names_blobs_by_etag_and_links_snapshots_relatively(synced: Synced) -> None:
    folder = synced.cache / "models--org--tiny-GGUF"
    commit = (folder / "refs" / "main").read_text()
    assert len(commit) == 40  # no trailing newline, as huggingface_hub writes it
    config = folder / "snapshots" / commit / "config.json"
    assert config.readlink() == Path("../../blobs") / git_blob_sha1(config.read_bytes())
    shard = folder / "snapshots" / commit / "split" / "tiny-Q8_0-00001-of-00002.gguf"
    assert shard.readlink().as_posix().startswith("../../../blobs/")  # Windows separates with backslashes
    assert len(shard.readlink().name) == 64  # LFS files are named by SHA256
