"""How the Hugging Face Hub names and stores files: LFS or git, their ETags, the cache layout.

Shared by the mirror (which serves files as the Hub does) and ``sync --hf-cache`` (which lays
synced files out as a Hugging Face cache, so ``huggingface_hub``, transformers and
``llama-server -hf … --offline`` find exactly the locked bytes)::

    <cache>/models--<org>--<name>/blobs/<etag>                  the content (here: a hard link to our blob)
    <cache>/models--<org>--<name>/snapshots/<commit>/<path>     relative symlink to ../../blobs/<etag>
    <cache>/models--<org>--<name>/refs/<revision>               the commit, no trailing newline

The ETag of an LFS file is its SHA256; of a plain git file, its git blob SHA-1.
"""

from __future__ import annotations

import hashlib
from fnmatch import fnmatchcase
from pathlib import Path

from alex_models._fs import atomic_write, link_atomically, safe_relpath

DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024

# The Hub's default .gitattributes for new model repos, plus GGUF (which the Hub also stores in LFS).
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gguf", "*.gz", "*.h5", "*.joblib",
    "*.lfs.*", "*.mlmodel", "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet",
    "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.rar", "*.safetensors", "saved_model/**/*",
    "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst", "*tfevents*",
)  # fmt: skip


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer text that git stores in place of an LFS file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a file's content: what the Hub lists as a plain file's oid and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def is_lfs_path(path: str, size: int, threshold: int = DEFAULT_LFS_THRESHOLD) -> bool:
    """Whether the Hub stores this file in LFS, by its default rules (a repo may have its own)."""
    name = path.rsplit("/", 1)[-1]
    return size > threshold or any(fnmatchcase(name, p) or fnmatchcase(path, p) for p in LFS_PATTERNS)


def repo_folder(cache: Path, repo: str) -> Path:
    """A repo's folder in a Hugging Face cache: ``models--org--name``."""
    org, name = repo.split("/")
    return cache / f"models--{org}--{name}"


def link_into_cache(
    cache: Path, repo: str, revision: str, commit: str, path: str, size: int, blob: Path
) -> Path:
    """Make ``path`` of ``repo`` at ``commit`` appear in the Hugging Face cache ``cache``, backed by
    ``blob`` (hard-linked; a symlink across filesystems). Returns the snapshot path."""
    relpath = safe_relpath(path, what="locked file path")
    folder = repo_folder(cache, repo)
    # Our blobs are named by SHA256, which is an LFS file's ETag; a git file's is its blob SHA-1.
    etag = blob.name if is_lfs_path(path, size) else git_blob_sha1(blob.read_bytes())
    cache_blob = folder / "blobs" / etag
    cache_blob.parent.mkdir(parents=True, exist_ok=True)
    if not (cache_blob.exists() and cache_blob.samefile(blob)):
        link_atomically(cache_blob, blob)
    snapshot = folder / "snapshots" / commit / relpath
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    target = Path(*[".."] * (len(relpath.parts) + 1), "blobs", etag)  # as huggingface_hub links them
    if not (snapshot.is_symlink() and snapshot.readlink() == target):
        link_atomically(snapshot, target, kind="symbolic")
    if revision != commit:
        atomic_write(folder / "refs" / revision, commit.encode())
    return snapshot
