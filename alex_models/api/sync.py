"""Use case ``sync``: the store holds exactly the locked bytes, views and emitted files follow.

Also the pieces ``pull`` shares: download jobs, the space check, the verified download, views.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import httpx2

from alex_models._units import human_size
from alex_models.api.project import default_lock_path, lock, read_lock
from alex_models.download import Downloader, DownloadOptions, FileJob, NoProgress, Progress
from alex_models.errors import Interrupted, UsageError, UserError, exit_code_of
from alex_models.fetch import download_headers, file_url
from alex_models.lock import Lock, LockedFile, LockedModel, drift
from alex_models.manifest import load_manifest, manifest_not_found
from alex_models.remote import Remote
from alex_models.settings import Settings, StoreHome, store_home
from alex_models.store import Store

_LISTED_AT_MOST = 8
_STOP_WAIT = 5.0
"""Seconds an interrupted download has to checkpoint and stop (it takes a fraction of one)."""


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


def store_for(manifest_path: Path | None = None, home: Path | None = None) -> Store:
    """The store a command reads and writes: ``home`` if the caller gives one, else as
    ``store_choice`` decides for this manifest."""
    return Store(store_choice(manifest_path, home).path)


def store_choice(manifest_path: Path | None = None, home: Path | None = None) -> StoreHome:
    """Which store, and why: ``home``, else ``ALEX_MODELS_HOME``, else the manifest's ``store:``
    (relative to the manifest's folder), else the default. The one place that decides it."""
    if home is not None:
        return StoreHome(home, "given")
    declared = None
    if manifest_path is not None and manifest_path.exists():
        store = load_manifest(manifest_path).store
        declared = None if store is None else manifest_relative(store, manifest_path).absolute()
    return store_home(declared)


def manifest_relative(path: str, manifest_path: Path) -> Path:
    """A path the manifest names (a store, an emit target): ``~`` expanded, relative to its folder."""
    expanded = Path(path).expanduser()
    return expanded if expanded.is_absolute() else manifest_path.parent / expanded


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
    endpoint: str | None = None,
    token: str | None = None,
) -> SyncResult:
    """Make the store hold exactly the locked bytes of the selected models, and their views.

    Files come from ``endpoint`` (default: ``HF_ENDPOINT``, else the Hub) with ``token`` (default:
    ``HF_TOKEN`` or the saved login; ``""``: none). Locking, when needed, asks ``remote``.

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
    store = store_for(manifest_path, store_home).init()
    emits = not frozen or manifest_path.exists()
    if locked and emits:
        _check_emitted(manifest_path, current, store)
    # Registered before anything is fetched, so a gc running meanwhile keeps what this sync brings.
    store.register_lock(lock_path)
    endpoint = (endpoint or settings.endpoint).rstrip("/")
    wanted = download_jobs(current, names, endpoint)
    missing = with_token(
        [job for job in wanted.values() if not store.has_blob(job.sha256, job.size)], endpoint, token
    )
    if missing and offline:
        labels = ", ".join(job.label for job in missing[:_LISTED_AT_MOST])
        more = f" and {len(missing) - _LISTED_AT_MOST} more" if len(missing) > _LISTED_AT_MOST else ""
        raise UserError(
            f"offline, and {len(missing)} locked file(s) are not in the store {store.home}: {labels}{more}",
            hint="run 'alex-models sync' where the endpoint is reachable, or copy the store here",
        )
    check_space(store, missing)
    counter = _CountingProgress(progress or NoProgress())
    fetched: set[str] = set()
    if missing:
        fetched = download_missing(
            store,
            missing,
            counter,
            jobs=jobs,
            client=client,
            options=options,
            checks=gguf_checks(current, names),
        )
    models = tuple(link_views(store, name, current.models[name]) for name in names)
    if hf_cache is not None:
        _link_hf_cache(store, hf_cache, [current.models[name] for name in names])
    emitted: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()
    if emits:  # with --locked, existing files were checked above: only missing ones are written
        from alex_models.api.emit import emit_targets  # noqa: PLC0415

        # With --only, a target may name a model not synced here: a warning says so, as before.
        results = emit_targets(manifest_path, lock=current, store_home=store.home, allow_missing=True)
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


def label(entry: LockedModel, file: LockedFile) -> str:
    return f"{entry.repo}/{file.path}" if entry.source == "hf" else f"{entry.url}"


def download_jobs(current: Lock, names: list[str], endpoint: str) -> dict[str, FileJob]:
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
                file.sha256, file.size, url, label(entry, file), download_headers(None), model=name
            )
    return jobs


def with_token(jobs: list[FileJob], endpoint: str, token: str | None = None) -> list[FileJob]:
    """The jobs, with the Hub token on those that go to the endpoint (never to another host).

    ``token`` None looks it up, which loads huggingface_hub, so a sync with nothing to fetch
    never does; ``""`` sends none.
    """
    if not any(job.url.startswith(f"{endpoint}/") for job in jobs):
        return jobs
    if token is None:
        from alex_models.hub import hub_token  # noqa: PLC0415

        token = hub_token()
    return [
        replace(job, headers=download_headers(token)) if job.url.startswith(f"{endpoint}/") else job
        for job in jobs
    ]


def gguf_checks(current: Lock, names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Every (repo path, label) each GGUF blob will have, to check its header against each name.

    One content may sit under several names (the same shard uploaded as shard 1 and shard 2):
    each name is checked, not just one of them.
    """
    checks: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        entry = current.models[name]
        for file in entry.files:
            if file.path.lower().endswith(".gguf") and file.role in ("model", "mmproj", "lora"):
                checks.setdefault(file.sha256, []).append((file.path, label(entry, file)))
    return checks


def check_space(store: Store, missing: list[FileJob]) -> None:
    """The store can take ``missing``: it is writable, and its disk has room for them."""
    if not missing:
        return
    store.require_writable(f"{len(missing)} locked file(s) are not in it yet")
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

    def waiting(self, job: FileJob, done: int) -> None:
        self.inner.waiting(job, done)


def download_missing(
    store: Store,
    missing: list[FileJob],
    progress: Progress,
    *,
    jobs: int,
    client: httpx2.Client | None,
    options: DownloadOptions | None,
    checks: dict[str, list[tuple[str, str]]],
    command: str = "sync",
) -> set[str]:
    """Fetch ``missing``; the SHA256s this process downloaded (not those another process brought).

    Ctrl-C or SIGTERM (a ``KeyboardInterrupt`` here) cancels every download; each checkpoints what
    arrived and stops within moments, and ``Interrupted`` says how much ``command`` resumes from.
    """
    from alex_models.fetch import new_client  # noqa: PLC0415
    from alex_models.ggufinfo import check_gguf  # noqa: PLC0415

    def check(partial: Path, job: FileJob) -> None:
        for repo_path, label in checks.get(job.sha256, ()):
            check_gguf(partial, repo_path, label=label)

    own_client = client is None
    http = client or new_client()
    try:
        downloader = Downloader(store, http, options=options, progress=progress, check=check)
        # Not a with-block: its exit would wait for every download to finish, even after Ctrl-C.
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        futures: list[Future[bool]] = []
        try:
            futures.extend(pool.submit(downloader.fetch, job) for job in missing)
            _first_error(futures)
        except KeyboardInterrupt as interrupt:
            downloader.cancel()
            wait(futures, timeout=_STOP_WAIT)
            raise Interrupted(
                f"interrupted; {human_size(downloader.kept)} kept, run {command} again to resume",
                exit_code=exit_code_of(interrupt),
            ) from None
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
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


def main_file(entry: LockedModel) -> LockedFile | None:
    models = entry.model_files
    return models[0] if models else None  # files are sorted: the first shard comes first


def link_views(store: Store, name: str, entry: LockedModel) -> SyncedModel:
    main = main_file(entry)
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


def require_lock(manifest_path: Path, lock_path: Path | None) -> tuple[Path, Lock]:
    """The lock beside the manifest (or at ``lock_path``), which must exist."""
    lock_path = lock_path or default_lock_path(manifest_path)
    current = read_lock(lock_path)
    if current is None:
        if not manifest_path.exists():  # a folder with neither file: the manifest is what to fix first
            raise manifest_not_found(manifest_path)
        raise UserError(f"{lock_path} does not exist", hint="run 'alex-models lock'")
    return lock_path, current
