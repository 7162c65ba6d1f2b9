"""Use case ``sync``: the store holds exactly the locked bytes, views and emitted files follow."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alex_models.api._context import default_lock_path, open_remotes, read_lock, select_models, store_for
from alex_models.api._materialize import (
    SyncedModel,
    artifact_repositories,
    check_space,
    distinct_files,
    download_jobs,
    download_missing,
    gguf_checks,
    label,
    link_views,
    with_token,
)
from alex_models.errors import UsageError, UserError
from alex_models.lock import Lock, LockedModel, drift
from alex_models.manifest import load_manifest
from alex_models.settings import Settings
from alex_models.store import Store

if TYPE_CHECKING:  # a sync with nothing to fetch never loads the downloader, the remotes or httpx2
    import httpx2

    from alex_models.api._emit import Emitted
    from alex_models.download import DownloadOptions, FileJob, Progress
    from alex_models.remote import Remote
    from alex_models.remotes import BlobRemote
    from alex_models.sources import Source

_LISTED_AT_MOST = 8


@dataclass(frozen=True)
class SyncResult:
    """What ``sync`` did: what it locked, fetched and reused, where the views are, what it wrote."""

    lock_path: Path
    store: Path
    resolved: tuple[str, ...]
    """Models this sync had to lock first."""
    downloaded: tuple[str, ...]
    """Files this process fetched (``repo/path`` or URL)."""
    reused: tuple[str, ...]
    """Files already in the store, or brought by another process meanwhile."""
    bytes_received: int
    seconds: float
    models: tuple[SyncedModel, ...]
    """Each synced model and its views."""
    emitted: tuple[Path, ...] = ()
    """Files of the manifest's ``emit:`` list that this sync rewrote."""
    warnings: tuple[str, ...] = ()
    """A remote that sent wrong bytes (another source served the file); what the emitted models'
    GGUF headers reveal (a context beyond training, no chat template)."""


@dataclass(frozen=True)
class SyncOptions:
    """How ``sync`` goes about it; the defaults are ``alex-models sync`` without flags."""

    locked: bool = False
    """Fail if the lock is out of date, instead of locking (CI's ``--locked``)."""
    frozen: bool = False
    """Use the lock as it is; never look at the manifest to resolve (deploy hosts' ``--frozen``)."""
    offline: bool = False
    """Never touch the network; fail naming what is missing (``HF_HUB_OFFLINE`` does the same)."""
    only: tuple[str, ...] = ()
    """Sync just these models (default: every locked one)."""
    jobs: int = 4
    """Files downloaded at once."""
    hf_cache: Path | None = None
    """Also lay the synced repo files out as a Hugging Face cache here, linked to the blobs (no
    copies), for huggingface_hub, transformers and ``llama-server -hf --offline``."""
    endpoint: str | None = None
    """Where files come from (default: ``HF_ENDPOINT``, else the Hub)."""
    token: str | None = None
    """The Hub token (default: ``HF_TOKEN`` or the saved login; ``""``: none)."""
    download: DownloadOptions | None = None
    """Connections, piece size, timeouts and retries of the downloader."""
    remotes: tuple[str, ...] = ()
    """Remotes asked first, in order (``--from``): URLs or names from the manifest's ``remotes:``."""
    hub: bool = True
    """Also fetch from each file's own place (the Hub, its URL); False (``--no-hub``): only from
    ``remotes``, and a blob none of them has is an error naming them."""


def sync(
    manifest_path: Path = Path("models.yaml"),
    options: SyncOptions | None = None,
    *,
    lock_path: Path | None = None,
    store_home: Path | None = None,
    progress: Progress | None = None,
    remote: Remote | None = None,
    client: httpx2.Client | None = None,
) -> SyncResult:
    """Make the store hold exactly the locked bytes of the selected models, and their views, then
    write the manifest's ``emit:`` files.

    Locks first when the lock is out of date (unless ``options.locked`` or ``options.frozen``);
    locking asks ``remote`` (default: the endpoint's Hub API). ``progress`` sees each download.
    """
    opts = options or SyncOptions()
    if not opts.hub and not opts.remotes:
        raise UsageError("--no-hub leaves no place to fetch from", hint="name a remote with --from REMOTE")
    if opts.remotes:  # a secret on the command line is refused before locking asks the Hub
        from alex_models.remotes import refuse_credentials  # noqa: PLC0415 - only with --from

        for given in opts.remotes:
            refuse_credentials(given)
    began = time.monotonic()
    settings = Settings.from_env()
    offline = opts.offline or settings.offline
    lock_path = lock_path or default_lock_path(manifest_path)
    current, resolved = _lock_for_sync(
        manifest_path, lock_path, locked=opts.locked, frozen=opts.frozen, offline=offline, remote=remote
    )
    names = select_models(current, opts.only)
    store = store_for(manifest_path, store_home).init()
    emits = not opts.frozen or manifest_path.exists()
    if opts.locked and emits:
        _check_emitted(manifest_path, current, store)
    # Registered before anything is fetched, so a gc running meanwhile keeps what this sync brings.
    store.register_lock(lock_path)
    endpoint = (opts.endpoint or settings.endpoint).rstrip("/")
    remotes = open_remotes(manifest_path, opts.remotes)
    files = distinct_files(current, names)
    fetched: set[str] = set()
    received = 0
    fetch_warnings: list[str] = []
    with contextlib.ExitStack() as opened:  # open until the downloads that read their sources end
        for each in remotes:
            opened.callback(each.close)
        # What is there is decided by the store's stat records, without hashing; only what is
        # absent makes download jobs, and so loads the downloader, the sources and httpx2.
        absent = {sha256 for sha256, (_, _, file) in files.items() if not store.has_blob(sha256, file.size)}
        if absent:
            fetched, received, fetch_warnings = _fetch(
                store,
                current,
                names,
                absent,
                remotes,
                opts,
                opened,
                endpoint=endpoint,
                offline=offline,
                progress=progress,
                client=client,
            )
    models = tuple(link_views(store, name, current.models[name]) for name in names)
    if opts.hf_cache is not None:
        _link_hf_cache(store, opts.hf_cache, [current.models[name] for name in names])
    emitted: tuple[Path, ...] = ()
    warnings = tuple(fetch_warnings)
    if emits:  # with --locked, existing files were checked above: only missing ones are written
        # With --only, a target may name a model not synced here: a warning says so, as before.
        results = _emit_targets(manifest_path, lock=current, store_home=store.home, allow_missing=True)
        emitted = tuple(r.path for r in results if r.changed and r.path is not None)
        warnings += tuple(dict.fromkeys(w for r in results for w in r.warnings))
    labels = {sha256: label(entry, file) for sha256, (_, entry, file) in files.items()}
    return SyncResult(
        lock_path=lock_path,
        store=store.home,
        resolved=resolved,
        downloaded=tuple(labels[sha256] for sha256 in labels if sha256 in fetched),
        reused=tuple(labels[sha256] for sha256 in labels if sha256 not in fetched),
        bytes_received=received,
        seconds=time.monotonic() - began,
        models=models,
        emitted=emitted,
        warnings=warnings,
    )


def _open_registries(repositories: list[str], opened: contextlib.ExitStack) -> dict[str, Source]:
    """The registry repositories ``oci`` models live in, as sources, closed with ``opened``."""
    if not repositories:
        return {}
    from alex_models.oci.artifact import open_registry  # noqa: PLC0415 - only for oci: models
    from alex_models.sources.oci import OciSource  # noqa: PLC0415

    sources: dict[str, Source] = {}
    for repository in repositories:
        registry = open_registry(repository)
        opened.callback(registry.close)
        sources[repository] = OciSource(registry)
    return sources


def _fetch(
    store: Store,
    current: Lock,
    names: list[str],
    absent: set[str],
    remotes: list[BlobRemote],
    opts: SyncOptions,
    opened: contextlib.ExitStack,
    *,
    endpoint: str,
    offline: bool,
    progress: Progress | None,
    client: httpx2.Client | None,
) -> tuple[set[str], int, list[str]]:
    """Download the ``absent`` blobs: the SHA256s this process fetched, the bytes it received, and
    what the sources got wrong on the way (a remote that sent other bytes)."""
    # Offline: no network, but a folder or a bundle on this machine is still read.
    reachable = [r for r in remotes if r.local or not offline]
    hub = opts.hub and not offline
    # Only the registries a missing blob needs: opening one may run a credential helper.
    lacking = [n for n in names if any(f.sha256 in absent for f in current.models[n].files)]
    registries = _open_registries(artifact_repositories(current, lacking) if hub else [], opened)
    sources = [r.source() for r in reachable]
    wanted = download_jobs(current, names, endpoint, sources, own=hub, registries=registries)
    missing = [job for job in wanted.values() if job.sha256 in absent]
    if offline and not reachable:
        listed = _listed([job.label for job in missing])
        raise UserError(
            f"offline, and {len(missing)} locked file(s) are not in the store {store.home}: {listed}",
            hint="run 'alex-models sync' where the endpoint is reachable, copy the store here, "
            "or name a folder or bundle with --from",
        )
    if not hub:
        _require_in_remotes(missing, reachable, "offline mode forbids the network" if offline else "")
    if hub:
        missing = with_token(missing, endpoint, opts.token)
    check_space(store, missing)
    counter = _CountingProgress(progress)
    warnings: list[str] = []
    fetched = download_missing(
        store,
        missing,
        counter,
        jobs=opts.jobs,
        client=client,
        options=opts.download,
        checks=gguf_checks(current, names),
        warn=warnings.append,
    )
    return fetched, counter.received, warnings


def _require_in_remotes(missing: list[FileJob], remotes: list[BlobRemote], offline: str) -> None:
    """``--no-hub`` or offline: every missing blob is in some remote (asked, not assumed), or
    nothing starts. ``offline`` says why the network is out, when it is."""
    absent = {job.sha256 for job in missing}
    for each in remotes:
        absent -= set(each.sizes(absent))
    if absent:
        lacking = [job.label for job in missing if job.sha256 in absent]
        raise UserError(
            f"no remote tried ({', '.join(r.url for r in remotes)}) has {_listed(lacking)}, "
            f"and {offline or '--no-hub forbids the Hub'}",
            hint="run 'alex-models push' where those files are synced, or sync without "
            + ("--offline" if offline else "--no-hub"),
        )


def _listed(labels: list[str]) -> str:
    """The first few of ``labels``, and how many more: a message stays one readable line."""
    more = f" and {len(labels) - _LISTED_AT_MOST} more" if len(labels) > _LISTED_AT_MOST else ""
    return ", ".join(labels[:_LISTED_AT_MOST]) + more


def _check_emitted(manifest_path: Path, current: Lock, store: Store) -> None:
    """--locked: an emitted file that exists but differs from what the lock gives now is an error."""

    stale = [
        r.path
        for r in _emit_targets(manifest_path, check=True, lock=current, store_home=store.home)
        if r.changed and r.path is not None and r.path.exists()
    ]
    if stale:
        raise UserError(
            f"emitted file(s) differ from what models.lock gives: {', '.join(str(p) for p in stale)}",
            hint="run 'alex-models emit' (or 'alex-models sync') and commit them; do not edit them by hand",
        )


def _emit_targets(
    manifest_path: Path, *, lock: Lock, store_home: Path, check: bool = False, allow_missing: bool = False
) -> list[Emitted]:
    """``emit_targets``, with the emitters (and ruamel, which writes their YAML) loaded only for a
    manifest that has ``emit:`` targets."""
    if not load_manifest(manifest_path).emit:
        return []
    from alex_models.api._emit import emit_targets  # noqa: PLC0415

    return emit_targets(
        manifest_path, check=check, allow_missing=allow_missing, store_home=store_home, lock=lock
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
    # Here, not at the top: the resolver and the lock writer load only when the lock is out of date.
    from alex_models.api._project import lock  # noqa: PLC0415

    result = lock(manifest_path, lock_path, remote=remote)
    updated = read_lock(lock_path)
    if updated is None:  # lock() always writes a lock for a valid manifest
        raise UserError(f"{lock_path} was not written")
    return updated, result.resolved


class _CountingProgress:
    def __init__(self, inner: Progress | None) -> None:
        from alex_models.download import NoProgress  # noqa: PLC0415 - made only when files download

        self.inner = inner or NoProgress()
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
