"""Use cases on a remote: ``push`` publishes the locked blobs and the lock; ``status --remote``
says which locked blobs a remote holds."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from alex_models._futures import run_interruptibly
from alex_models._platform import return_freed_buffers
from alex_models._units import human_size
from alex_models.api._context import open_remotes, require_lock, select_models, store_for
from alex_models.api._materialize import label
from alex_models.download import FileJob, NoProgress, Progress
from alex_models.errors import IntegrityError, UsageError, UserError
from alex_models.lock import Lock
from alex_models.oci.modelpack import DEFAULT_TAG, model_tags
from alex_models.remotes import BlobRemote, ModelPublisher, MountsBlobs
from alex_models.remotes.base import LeavesTemporaries
from alex_models.store import Store, published_keys

_STOP_WAIT = 5.0
"""Seconds the uploads in flight have to stop after Ctrl-C (each stops at its next chunk)."""


@dataclass(frozen=True)
class RemoteBlob:
    """One locked blob, as a remote holds it (or not)."""

    label: str
    """The file that pins it: ``org/repo/path`` or its URL (the first, when several do)."""
    sha256: str
    size: int
    """Bytes the lock pins."""
    models: tuple[str, ...]
    """The selected models that use it."""

    def shown(self) -> FileJob:
        """The blob as a progress display shows a file (sent or copied: no source to fetch from)."""
        return FileJob(self.sha256, self.size, (), self.label)


@dataclass(frozen=True)
class PushResult:
    """What ``push`` did: the blobs it uploaded or mounted, those the remote already held, where
    the lock went."""

    remote: str
    """The remote's URL."""
    uploaded: tuple[RemoteBlob, ...]
    """Sent, byte for byte."""
    skipped: tuple[RemoteBlob, ...]
    """Already in the remote with the locked size (or uploaded meanwhile by another push)."""
    lock_key: str
    """Where the lock was published below the remote (``store.published_keys``): ``locks/<sha256
    of its text>.lock``; the manifest, when there is one, sits beside it as ``.yaml``."""
    seconds: float
    artifacts: tuple[str, ...] = ()
    """What a registry published, one per model: ``registry/repository:name@sha256:…``."""
    mounted: tuple[RemoteBlob, ...] = ()
    """Taken by a registry from another of its repositories, no byte sent (``MountsBlobs``)."""

    @property
    def bytes_uploaded(self) -> int:
        return sum(blob.size for blob in self.uploaded)

    @property
    def bytes_mounted(self) -> int:
        return sum(blob.size for blob in self.mounted)


@dataclass(frozen=True)
class RemoteModel:
    """One locked model against a remote."""

    name: str
    present: tuple[RemoteBlob, ...]
    missing: tuple[RemoteBlob, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class RemoteStatusResult:
    """Which locked blobs a remote holds, per model (``status --remote``)."""

    remote: str
    lock_path: Path
    models: tuple[RemoteModel, ...]

    @property
    def complete(self) -> bool:
        return all(model.complete for model in self.models)


def push(
    manifest_path: Path = Path("models.yaml"),
    remote: str | None = None,
    *,
    only: tuple[str, ...] = (),
    jobs: int = 4,
    tag: str | None = None,
    lock_path: Path | None = None,
    store_home: Path | None = None,
    progress: Progress | None = None,
) -> PushResult:
    """Upload every blob the lock pins for the selected models that ``remote`` lacks, from the
    local store, then publish the lock (and manifest) under ``locks/``; a registry also publishes
    each selected model as an artifact (``remotes.ModelPublisher``).

    ``remote`` is a URL or a name from the manifest's ``remotes:`` (default: its first). ``tag``
    is a registry's tag template (``oci.modelpack.model_tags``; default: the model's name). Each
    upload creates its object only if absent, so a rerun after a kill, or a second push of the same
    lock at once, is safe. Nothing is uploaded unless every selected blob is synced locally.
    """
    began = time.monotonic()
    lock_path, current = require_lock(manifest_path, lock_path)
    names = select_models(current, only)
    blobs = locked_blobs(current, names)
    store = store_for(manifest_path, store_home)
    require_synced(store, blobs, "nothing was uploaded")
    (opened,) = open_remotes(manifest_path, [remote])
    try:
        tags = _tags(opened, current, names, tag)  # a template that cannot work fails before any upload
        if isinstance(opened, LeavesTemporaries):
            opened.remove_abandoned()  # what pushes killed long ago left, here or on other hosts
        held = _held(opened, blobs)
        todo = [blob for blob in blobs if blob.sha256 not in held]
        if isinstance(opened, MountsBlobs):
            opened.mount_from(current)
        return_freed_buffers()  # parallel multipart uploads keep peak memory near one's
        done = _upload_all(opened, todo, store, jobs, progress or NoProgress())
        mounted = opened.mounted() if isinstance(opened, MountsBlobs) else frozenset()
        created = [blob for blob, new in zip(todo, done, strict=True) if new]
        # The models, then the lock: a published lock means everything it names is there.
        artifacts = opened.publish(current, tags) if isinstance(opened, ModelPublisher) else ()
        text = lock_path.read_bytes()
        lock_key, manifest_key = published_keys(text)
        opened.write(lock_key, text)
        if manifest_path.exists():
            opened.write(manifest_key, manifest_path.read_bytes())
    finally:
        opened.close()
    return PushResult(
        remote=opened.url,
        uploaded=tuple(blob for blob in created if blob.sha256 not in mounted),
        skipped=tuple(blob for blob in blobs if blob.sha256 in held)
        + tuple(blob for blob, new in zip(todo, done, strict=True) if not new),
        lock_key=lock_key,
        seconds=time.monotonic() - began,
        artifacts=artifacts,
        mounted=tuple(blob for blob in created if blob.sha256 in mounted),
    )


def _tags(remote: BlobRemote, current: Lock, names: list[str], template: str | None) -> dict[str, str]:
    """The tag of each model a registry publishes; a template for a remote without tags is refused."""
    if isinstance(remote, ModelPublisher):
        return model_tags(current, names, template or DEFAULT_TAG)
    if template is not None:
        raise UsageError(
            f"--tag names the tags of a registry's artifacts; {remote.url} is not a registry",
            hint="push to oci://REGISTRY/REPOSITORY, or leave --tag out",
        )
    return {}


def remote_status(
    manifest_path: Path = Path("models.yaml"), remote: str | None = None, *, lock_path: Path | None = None
) -> RemoteStatusResult:
    """Which blobs the lock pins ``remote`` holds with the locked size, model by model."""
    lock_path, current = require_lock(manifest_path, lock_path)
    (opened,) = open_remotes(manifest_path, [remote])
    try:  # one question to the remote for every locked blob, not one per model
        held = _held(opened, locked_blobs(current, sorted(current.models)), damaged_ok=True)
    finally:
        opened.close()
    models = []
    for name in sorted(current.models):
        blobs = locked_blobs(current, [name])
        models.append(
            RemoteModel(
                name,
                present=tuple(b for b in blobs if b.sha256 in held),
                missing=tuple(b for b in blobs if b.sha256 not in held),
            )
        )
    return RemoteStatusResult(remote=opened.url, lock_path=lock_path, models=tuple(models))


def locked_blobs(current: Lock, names: list[str]) -> list[RemoteBlob]:
    """The distinct blobs of these models, in lock order, each with the models that use it."""
    found: dict[str, RemoteBlob] = {}
    for name in names:
        entry = current.models[name]
        for file in entry.files:
            known = found.get(file.sha256)
            if known is None:
                found[file.sha256] = RemoteBlob(label(entry, file), file.sha256, file.size, (name,))
            elif name not in known.models:
                found[file.sha256] = replace(known, models=(*known.models, name))
    return list(found.values())


def require_synced(store: Store, blobs: list[RemoteBlob], nothing_done: str) -> None:
    """Publishing reads the local store: every blob must be there, verified, or nothing starts;
    the message names the models to sync and says ``nothing_done``."""
    unsynced = sorted({m for b in blobs if not store.has_blob(b.sha256, b.size) for m in b.models})
    if unsynced:
        raise UserError(
            f"model(s) {', '.join(unsynced)} are not synced into {store.home}; {nothing_done}",
            hint="run 'alex-models sync' first",
        )


def _held(remote: BlobRemote, blobs: list[RemoteBlob], *, damaged_ok: bool = False) -> set[str]:
    """The blobs ``remote`` holds with the locked size. One of another size is damaged: push
    refuses to work around it (uploads never overwrite); ``status`` counts it as missing."""
    sizes = remote.sizes(blob.sha256 for blob in blobs)
    damaged = [b for b in blobs if b.sha256 in sizes and sizes[b.sha256] != b.size]
    if damaged and not damaged_ok:
        first = damaged[0]
        raise IntegrityError(
            f"{remote.url} holds {first.label} ({first.sha256}) with {human_size(sizes[first.sha256])}, "
            f"the lock pins {human_size(first.size)}"
            + (f" ({len(damaged) - 1} more like it)" if len(damaged) > 1 else ""),
            hint="that copy is damaged and uploads never overwrite it: delete it there, then push again",
        )
    return {b.sha256 for b in blobs if sizes.get(b.sha256) == b.size}


def _upload_all(
    remote: BlobRemote, todo: list[RemoteBlob], store: Store, jobs: int, progress: Progress
) -> list[bool]:
    """Upload ``todo`` in parallel, shown to ``progress`` as downloads are; for each, whether this
    push created it. Ctrl-C stops every upload at its next chunk (a half-sent blob never appears
    under its name) and says so."""
    stop = threading.Event()

    def upload(blob: RemoteBlob) -> bool:
        shown = blob.shown()

        def advanced(count: int) -> None:
            if stop.is_set():
                raise _Stopped
            progress.advanced(shown, count)

        progress.started(shown, 0)
        created = remote.upload(blob.sha256, blob.size, store.blob_path(blob.sha256), advanced)
        progress.finished(shown)
        return created

    def said(futures: list[Future[bool]]) -> str:
        finished = sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)
        return f"interrupted; {finished} of {len(todo)} blob(s) uploaded, run push again to send the rest"

    return run_interruptibly(
        upload, todo, workers=jobs, stop=stop.set, said=said, grace=_STOP_WAIT, stop_on_failure=True
    )


class _Stopped(Exception):
    """Raised inside an upload to stop it (Ctrl-C, or another upload failed)."""
