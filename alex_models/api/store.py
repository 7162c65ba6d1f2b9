"""Use cases on the store: ``sync``, ``status``, ``verify``, ``path``, ``gc``, ``pull``."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import httpx2
from filelock import Timeout

from alex_models._fs import link_atomically, safe_relpath
from alex_models.api.project import default_lock_path, lock, read_lock
from alex_models.download import Downloader, DownloadOptions, FileJob, NoProgress, Progress
from alex_models.errors import IntegrityError, UsageError, UserError
from alex_models.fetch import download_headers, file_url
from alex_models.lock import Lock, LockedFile, LockedModel, drift
from alex_models.manifest import ModelInput, load_manifest
from alex_models.remote import Remote
from alex_models.resolve import select
from alex_models.settings import Settings
from alex_models.store import Store

_LISTED_AT_MOST = 8


@dataclass(frozen=True)
class SyncedModel:
    """One model after ``sync``: where llama.cpp finds it."""

    name: str
    main: Path | None
    """The view of the main file (the first shard of a split model); None if it has no model file."""
    views: tuple[Path, ...]


@dataclass(frozen=True)
class SyncResult:
    lock_path: Path
    store: Path
    resolved: tuple[str, ...]
    """Models this sync had to lock first."""
    downloaded: tuple[str, ...]
    reused: tuple[str, ...]
    bytes_received: int
    seconds: float
    models: tuple[SyncedModel, ...]
    emitted: tuple[Path, ...] = ()
    """Files of the manifest's ``emit:`` list that this sync rewrote."""
    warnings: tuple[str, ...] = ()
    """What the emitted models' GGUF headers reveal (a context beyond training, no chat template)."""


def store_for(home: Path | None = None) -> Store:
    return Store(home or Settings.from_env().home)


def sync(
    manifest_path: Path = Path("models.yaml"),
    lock_path: Path | None = None,
    *,
    locked: bool = False,
    frozen: bool = False,
    offline: bool = False,
    only: Iterable[str] = (),
    jobs: int = 4,
    store_home: Path | None = None,
    progress: Progress | None = None,
    remote: Remote | None = None,
    client: httpx2.Client | None = None,
    options: DownloadOptions | None = None,
    hf_cache: Path | None = None,
) -> SyncResult:
    """Make the store hold exactly the locked bytes of the selected models, and their views.

    With ``hf_cache``, the synced repo files also appear in that Hugging Face cache, linked to the
    verified blobs (no copies), for huggingface_hub, transformers and ``llama-server -hf --offline``.

    Locks first when the lock is out of date (``locked``: fail instead; ``frozen``: never look at
    the manifest). ``offline`` never touches the network and fails naming what is missing.
    """
    began = time.monotonic()
    settings = Settings.from_env()
    offline = offline or settings.offline
    lock_path = lock_path or default_lock_path(manifest_path)
    current, resolved = _lock_for_sync(
        manifest_path, lock_path, locked=locked, frozen=frozen, offline=offline, remote=remote
    )
    names = _selected(current, only)
    store = (Store(store_home) if store_home else store_for()).init()
    emits = not frozen or manifest_path.exists()
    if locked and emits:
        _check_emitted(manifest_path, current, store)
    # Registered before anything is fetched, so a gc running meanwhile keeps what this sync brings.
    store.register_lock(lock_path)
    wanted = _jobs(current, names, settings.endpoint)
    missing = _with_token(
        [job for job in wanted.values() if not store.has_blob(job.sha256, job.size)], settings.endpoint
    )
    if missing and offline:
        labels = ", ".join(job.label for job in missing[:_LISTED_AT_MOST])
        more = f" and {len(missing) - _LISTED_AT_MOST} more" if len(missing) > _LISTED_AT_MOST else ""
        raise UserError(
            f"offline, and {len(missing)} locked file(s) are not in the store {store.home}: {labels}{more}",
            hint="run 'alex-models sync' where the endpoint is reachable, or copy the store here",
        )
    _check_space(store, missing)
    counter = _CountingProgress(progress or NoProgress())
    fetched: set[str] = set()
    if missing:
        fetched = _download(
            store,
            missing,
            counter,
            jobs=jobs,
            client=client,
            options=options,
            checks=_gguf_checks(current, names),
        )
    models = tuple(_link_views(store, name, current.models[name]) for name in names)
    if hf_cache is not None:
        _link_hf_cache(store, hf_cache, [current.models[name] for name in names])
    emitted: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()
    if emits:  # with --locked, existing files were checked above: only missing ones are written
        from alex_models.api.emit import emit_targets  # noqa: PLC0415

        results = emit_targets(manifest_path, lock=current, store_home=store.home)
        emitted = tuple(r.path for r in results if r.changed and r.path is not None)
        warnings = tuple(dict.fromkeys(w for r in results for w in r.warnings))
    return SyncResult(
        lock_path=lock_path,
        store=store.home,
        resolved=resolved,
        downloaded=tuple(job.label for job in missing if job.sha256 in fetched),
        reused=tuple(job.label for job in wanted.values() if job.sha256 not in fetched),
        bytes_received=counter.received,
        seconds=time.monotonic() - began,
        models=models,
        emitted=emitted,
        warnings=warnings,
    )


def _check_emitted(manifest_path: Path, current: Lock, store: Store) -> None:
    """--locked: an emitted file that exists but differs from what the lock gives now is an error."""
    from alex_models.api.emit import emit_targets  # noqa: PLC0415

    stale = [
        r.path
        for r in emit_targets(manifest_path, check=True, lock=current, store_home=store.home)
        if r.changed and r.path is not None and r.path.exists()
    ]
    if stale:
        raise UserError(
            f"emitted file(s) differ from what models.lock gives: {', '.join(str(p) for p in stale)}",
            hint="run 'alex-models emit' (or 'alex-models sync') and commit them; do not edit them by hand",
        )


def _lock_for_sync(
    manifest_path: Path, lock_path: Path, *, locked: bool, frozen: bool, offline: bool, remote: Remote | None
) -> tuple[Lock, tuple[str, ...]]:
    if locked and frozen:
        raise UsageError(
            "--locked and --frozen exclude each other", hint="--locked checks the lock; --frozen trusts it"
        )
    if frozen:
        found = read_lock(lock_path)
        if found is None:
            raise UserError(
                f"{lock_path} does not exist, and --frozen uses only the lock",
                hint="run 'alex-models lock' and commit models.lock",
            )
        return found, ()
    manifest = load_manifest(manifest_path)
    previous = read_lock(lock_path)
    changes = drift(manifest, previous)
    if not changes and previous is not None:
        return previous, ()
    summary = "; ".join(change.describe() for change in changes[:_LISTED_AT_MOST]) or "no lock yet"
    if locked:
        problem = "does not exist" if previous is None else f"needs to be updated ({summary})"
        raise UserError(
            f"{lock_path} {problem}, but --locked was given",
            hint="run 'alex-models lock' and commit models.lock",
        )
    if offline:
        raise UserError(
            f"{lock_path} is out of date ({summary}) and offline mode forbids resolving",
            hint="run 'alex-models lock' where the endpoint is reachable",
        )
    result = lock(manifest_path, lock_path, remote=remote)
    updated = read_lock(lock_path)
    if updated is None:  # lock() always writes a lock for a valid manifest
        raise UserError(f"{lock_path} was not written")
    return updated, result.resolved


def _selected(current: Lock, only: Iterable[str]) -> list[str]:
    chosen = sorted(set(only)) or sorted(current.models)
    unknown = [name for name in chosen if name not in current.models]
    if unknown:
        raise UserError(
            f"no model named {', '.join(unknown)} in the lock",
            hint=f"locked models: {', '.join(sorted(current.models)) or 'none'}",
        )
    return chosen


def _label(entry: LockedModel, file: LockedFile) -> str:
    return f"{entry.repo}/{file.path}" if entry.source == "hf" else f"{entry.url}"


def _jobs(current: Lock, names: list[str], endpoint: str) -> dict[str, FileJob]:
    """One download job per distinct content: identical files in two repos are fetched once.

    Jobs carry no token yet: ``_with_token`` adds it to the ones that will really download.
    """
    jobs: dict[str, FileJob] = {}
    for name in names:
        entry = current.models[name]
        for file in entry.files:
            if file.sha256 in jobs:
                continue
            if entry.source == "hf" and entry.repo is not None and entry.commit is not None:
                url = file_url(endpoint, entry.repo, entry.commit, file.path)
            else:
                url = str(entry.url)
            jobs[file.sha256] = FileJob(
                file.sha256, file.size, url, _label(entry, file), download_headers(None)
            )
    return jobs


def _with_token(jobs: list[FileJob], endpoint: str) -> list[FileJob]:
    """The jobs, with the Hub token on those that go to the endpoint (never to another host).

    Looking the token up loads huggingface_hub, so a sync with nothing to fetch never does.
    """
    if not any(job.url.startswith(f"{endpoint}/") for job in jobs):
        return jobs
    from alex_models.hub import hub_token  # noqa: PLC0415

    token = hub_token()
    return [
        replace(job, headers=download_headers(token)) if job.url.startswith(f"{endpoint}/") else job
        for job in jobs
    ]


def _gguf_checks(current: Lock, names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Every (repo path, label) each GGUF blob will have, to check its header against each name.

    One content may sit under several names (the same shard uploaded as shard 1 and shard 2):
    each name is checked, not just one of them.
    """
    checks: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        entry = current.models[name]
        for file in entry.files:
            if file.path.lower().endswith(".gguf") and file.role in ("model", "mmproj", "lora"):
                checks.setdefault(file.sha256, []).append((file.path, _label(entry, file)))
    return checks


def _check_space(store: Store, missing: list[FileJob]) -> None:
    # A partial download already holds its whole size (it is preallocated).
    needed = sum(job.size for job in missing if not store.partial_path(job.sha256).exists())
    free = shutil.disk_usage(store.home).free
    if needed > free:
        raise UserError(
            f"not enough disk space in {store.home}: {needed} bytes needed, {free} free",
            hint="free some space (alex-models gc), or point ALEX_MODELS_HOME at a larger disk",
        )


class _CountingProgress:
    def __init__(self, inner: Progress) -> None:
        self.inner = inner
        self.received = 0

    def started(self, job: FileJob, already: int) -> None:
        self.inner.started(job, already)

    def advanced(self, job: FileJob, received: int) -> None:
        self.received += received  # int += is atomic enough under the GIL for a byte count
        self.inner.advanced(job, received)

    def finished(self, job: FileJob) -> None:
        self.inner.finished(job)


def _download(
    store: Store,
    missing: list[FileJob],
    progress: Progress,
    *,
    jobs: int,
    client: httpx2.Client | None,
    options: DownloadOptions | None,
    checks: dict[str, list[tuple[str, str]]],
) -> set[str]:
    """Fetch ``missing``; the SHA256s this process downloaded (not those another process brought)."""
    from alex_models.fetch import new_client  # noqa: PLC0415
    from alex_models.ggufinfo import check_gguf  # noqa: PLC0415

    def check(partial: Path, job: FileJob) -> None:
        for repo_path, label in checks.get(job.sha256, ()):
            check_gguf(partial, repo_path, label=label)

    own_client = client is None
    http = client or new_client()
    try:
        downloader = Downloader(store, http, options=options, progress=progress, check=check)
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(downloader.fetch, job) for job in missing]
            _first_error(futures)
        # fetch() is False when a concurrent sync stored the blob while this one waited for its lock.
        return {job.sha256 for job, future in zip(missing, futures, strict=True) if future.result()}
    finally:
        if own_client:
            http.close()


def _first_error(futures: list[Future[bool]]) -> None:
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    failure = next((f.exception() for f in done if f.exception() is not None), None)
    if failure is not None:
        for future in futures:
            future.cancel()  # files not started yet are not started; the running ones finish
        wait(futures)
        raise failure


def _main_file(entry: LockedModel) -> LockedFile | None:
    models = entry.model_files
    return models[0] if models else None  # files are sorted: the first shard comes first


def _link_views(store: Store, name: str, entry: LockedModel) -> SyncedModel:
    main = _main_file(entry)
    views = []
    # The main file is linked last: llama.cpp finds a split model's shards through the first one,
    # so whenever it exists, every other shard already does.
    for file in sorted(entry.files, key=lambda f: f == main):
        view = store.view_path(entry, file)
        store.link_view(view, file.sha256)
        views.append(view)
    return SyncedModel(
        name=name, main=None if main is None else store.view_path(entry, main), views=tuple(views)
    )


def _link_hf_cache(store: Store, cache: Path, entries: list[LockedModel]) -> None:
    from alex_models.hubfiles import link_into_cache  # noqa: PLC0415

    for entry in entries:
        if entry.source != "hf" or entry.repo is None or entry.revision is None or entry.commit is None:
            continue  # a plain URL has no place in a Hugging Face cache
        for file in entry.files:
            link_into_cache(
                cache,
                entry.repo,
                entry.revision,
                entry.commit,
                file.path,
                file.size,
                store.blob_path(file.sha256),
            )


# -- status, verify, path -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelStatus:
    name: str
    state: Literal["present", "partial", "missing"]
    files: int
    present_files: int
    size: int
    present_bytes: int
    main: Path | None


@dataclass(frozen=True)
class StatusResult:
    lock_path: Path
    store: Path
    stale: tuple[str, ...]
    """The lock's drift from the manifest, described; empty when fresh (or with no manifest)."""
    models: tuple[ModelStatus, ...]


def require_lock(manifest_path: Path, lock_path: Path | None) -> tuple[Path, Lock]:
    """The lock beside the manifest (or at ``lock_path``), which must exist."""
    lock_path = lock_path or default_lock_path(manifest_path)
    current = read_lock(lock_path)
    if current is None:
        raise UserError(f"{lock_path} does not exist", hint="run 'alex-models lock'")
    return lock_path, current


def status(
    manifest_path: Path = Path("models.yaml"), lock_path: Path | None = None, store_home: Path | None = None
) -> StatusResult:
    """What is locked, and how much of it the store holds. Never touches the network."""
    lock_path, current = require_lock(manifest_path, lock_path)
    stale: tuple[str, ...] = ()
    if manifest_path.exists():
        stale = tuple(change.describe() for change in drift(load_manifest(manifest_path), current))
    store = Store(store_home) if store_home else store_for()
    models = []
    for name, entry in sorted(current.models.items()):
        present = [f for f in entry.files if store.has_blob(f.sha256, f.size)]
        state: Literal["present", "partial", "missing"] = (
            "present" if len(present) == len(entry.files) else "partial" if present else "missing"
        )
        main = _main_file(entry)
        view = None if main is None else store.view_path(entry, main)
        models.append(
            ModelStatus(
                name=name,
                state=state,
                files=len(entry.files),
                present_files=len(present),
                size=sum(f.size for f in entry.files),
                present_bytes=sum(f.size for f in present),
                main=view if view is not None and view.exists() else None,
            )
        )
    return StatusResult(lock_path=lock_path, store=store.home, stale=stale, models=tuple(models))


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    corrupt: tuple[str, ...]
    """Files whose bytes no longer match the lock; removed from the store (blob and views)."""
    missing: tuple[str, ...]


def verify(
    manifest_path: Path = Path("models.yaml"), lock_path: Path | None = None, store_home: Path | None = None
) -> VerifyResult:
    """Re-hash every blob the lock references, whatever the stat records say.

    A corrupt blob is removed with its views, so llama.cpp cannot load it and the next ``sync``
    fetches it again; the result names it, and the CLI exits 3.
    """
    lock_path, current = require_lock(manifest_path, lock_path)
    store = Store(store_home) if store_home else store_for()
    seen: dict[str, bool] = {}
    corrupt, missing = [], []
    for entry in current.models.values():
        for file in entry.files:
            if file.sha256 not in seen:
                if not store.blob_path(file.sha256).exists():
                    seen[file.sha256] = False
                    missing.append(_label(entry, file))
                    continue
                seen[file.sha256] = store.verify_blob(file.sha256, file.size)
                if not seen[file.sha256]:
                    corrupt.append(_label(entry, file))
                    store.discard_blob(file.sha256)
            if seen[file.sha256] is False:
                with contextlib.suppress(FileNotFoundError):
                    store.view_path(entry, file).unlink()
    return VerifyResult(checked=len(seen), corrupt=tuple(corrupt), missing=tuple(missing))


def model_path(
    name: str,
    manifest_path: Path = Path("models.yaml"),
    lock_path: Path | None = None,
    store_home: Path | None = None,
) -> Path:
    """The view path of a model's main file (the first shard of a split model), for scripts."""
    lock_path, current = require_lock(manifest_path, lock_path)
    entry = current.models.get(name)
    if entry is None:
        raise UserError(
            f"no model named {name!r} in {lock_path}",
            hint=f"locked models: {', '.join(sorted(current.models)) or 'none'}",
        )
    main = _main_file(entry)
    if main is None:
        raise UserError(f"model {name!r} has no model file (only {', '.join(f.path for f in entry.files)})")
    store = Store(store_home) if store_home else store_for()
    view = store.view_path(entry, main)
    if not view.exists():
        raise UserError(f"model {name!r} is not synced into {store.home}", hint="run 'alex-models sync'")
    return view


# -- gc ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GcResult:
    removed_blobs: int
    removed_partials: int
    removed_views: int
    bytes_freed: int
    kept_locks: tuple[str, ...]
    dry_run: bool


def gc(*, dry_run: bool = False, store_home: Path | None = None) -> GcResult:
    """Remove blobs, views and partial downloads that no registered, still existing lock references.

    A blob or partial whose file lock is held (a ``sync`` is fetching it) is never touched.
    """
    store = (Store(store_home) if store_home else store_for()).init()
    keep_blobs, keep_views, live_locks = _referenced(store)
    freed = blobs = partials = views = 0
    for blob in list(store.blobs()):
        if blob.name not in keep_blobs and _removable(store, blob.name):
            freed += blob.stat().st_size
            blobs += 1
            if not dry_run:
                store.discard_blob(blob.name)
    for partial in list((store.home / "tmp").glob("*.part")):
        sha256 = partial.name.removesuffix(".part")
        if sha256 not in keep_blobs and _removable(store, sha256):
            freed += partial.stat().st_blocks * 512
            partials += 1
            if not dry_run:
                partial.unlink(missing_ok=True)
                store.progress_path(sha256).unlink(missing_ok=True)
    for view in [v for v in (store.home / "llama.cpp").rglob("*") if v.is_file() or v.is_symlink()]:
        if view not in keep_views:
            views += 1
            if not dry_run:
                view.unlink(missing_ok=True)
    if not dry_run:
        _remove_empty_dirs(store.home / "llama.cpp")
        store.set_registered_locks(live_locks)
    return GcResult(blobs, partials, views, freed, tuple(sorted(live_locks)), dry_run)


def _referenced(store: Store) -> tuple[set[str], set[Path], list[str]]:
    """Blobs and views the registered locks still pin, and those locks."""
    keep_blobs: set[str] = set()
    keep_views: set[Path] = set()
    live_locks = []
    for lock_file in store.registered_locks():
        try:
            current = read_lock(Path(lock_file))
        except (UserError, IntegrityError) as exc:
            # Its blobs cannot be told apart from garbage: removing nothing is the safe answer.
            raise UserError(
                f"gc cannot read {lock_file}, which synced into this store: {exc.message}",
                hint="fix or restore that lock (or delete it if it is gone for good), then run gc again",
            ) from None
        if current is None:
            continue  # the lock file is gone: what it pinned is garbage now
        live_locks.append(lock_file)
        for entry in current.models.values():
            for file in entry.files:
                keep_blobs.add(file.sha256)
                keep_views.add(store.view_path(entry, file))
    return keep_blobs, keep_views, live_locks


def _removable(store: Store, sha256: str) -> bool:
    """Not held by a running sync. The lock is taken and released at once: gc never waits."""
    try:
        with store.blob_lock(sha256).acquire(timeout=0):
            return True
    except Timeout:
        return False


def _remove_empty_dirs(top: Path) -> None:
    for directory in sorted(
        (p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with contextlib.suppress(OSError):
            directory.rmdir()


# -- pull ------------------------------------------------------------------------------------------------


def pull(
    repo: str,
    file: str,
    *,
    revision: str = "main",
    directory: Path | None = None,
    sha256: str | None = None,
    store_home: Path | None = None,
    remote: Remote | None = None,
    progress: Progress | None = None,
    client: httpx2.Client | None = None,
) -> Path:
    """Download one file (every shard, for the first shard of a split model) without a manifest.

    The bytes go through the store and the same verified downloader as ``sync``; ``sha256`` pins
    the expected content. Returns the view path, or the path placed in ``directory``.
    """
    from alex_models.hub import HubRemote  # noqa: PLC0415

    safe_relpath(file, what="file to pull")  # refused before any request, as in a manifest
    settings = Settings.from_env()
    owned = remote is None
    source = remote or HubRemote(settings.endpoint, offline=settings.offline)
    try:
        snapshot = source.snapshot(repo, revision)
        picked = select(f"{repo}/{file}", ModelInput(repo=repo, revision=revision, file=file), snapshot)
        files = []
        for remote_file, role in picked:
            digest = remote_file.sha256 or source.file_sha256(
                repo, snapshot.commit, remote_file.path, remote_file.size
            )
            files.append(LockedFile(path=remote_file.path, role=role, size=remote_file.size, sha256=digest))
    finally:
        if owned and isinstance(source, HubRemote):
            source.close()
    requested = next(f for f in files if f.path == file)
    if sha256 is not None and requested.sha256 != sha256.lower():
        raise IntegrityError(
            f"{repo}/{file} at {snapshot.commit[:12]} has SHA256 {requested.sha256}, not {sha256}",
            hint="check --sha256, or the revision",
        )
    entry = LockedModel(
        input=ModelInput(repo=repo, revision=revision, file=file),
        source="hf",
        repo=repo,
        revision=revision,
        commit=snapshot.commit,
        files=files,
    )
    single = Lock(version=1, models={"pull": entry})
    store = (Store(store_home) if store_home else store_for()).init()
    wanted = _jobs(single, ["pull"], settings.endpoint)
    missing = _with_token(
        [job for job in wanted.values() if not store.has_blob(job.sha256, job.size)], settings.endpoint
    )
    _check_space(store, missing)
    if missing:
        _download(
            store,
            missing,
            progress or NoProgress(),
            jobs=4,
            client=client,
            options=None,
            checks=_gguf_checks(single, ["pull"]),
        )
    synced = _link_views(store, "pull", entry)
    view = store.view_path(entry, requested)
    if directory is None:
        return view
    return _place(synced.views, store.view_path(entry, requested), directory)


def _place(views: tuple[Path, ...], requested: Path, directory: Path) -> Path:
    """Put the pulled files in ``directory``: hard links where possible, copies otherwise."""
    directory.mkdir(parents=True, exist_ok=True)
    for view in views:
        target = directory / view.name
        if not (target.exists() and target.samefile(view)):
            link_atomically(target, view, fallback="copy")
    return directory / requested.name
