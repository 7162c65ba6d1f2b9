"""The steps ``sync`` and ``pull`` share: download jobs, the space check, the verified download
(interruptible), and the views llama.cpp reads.

The downloader, the sources and the HTTP stack are imported by the functions that download, not
here: a sync that finds every blob in place links views and never loads them.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from alex_models._units import human_size
from alex_models.errors import UserError
from alex_models.lock import Lock, LockedFile, LockedModel
from alex_models.store import Store

if TYPE_CHECKING:
    import httpx2

    from alex_models.download import DownloadOptions, FileJob, Progress
    from alex_models.sources import HubSource, Source

_STOP_WAIT = 5.0
"""Seconds an interrupted download has to checkpoint and stop (it takes a fraction of one)."""


@dataclass(frozen=True)
class SyncedModel:
    """One model after ``sync``: where llama.cpp finds it."""

    name: str
    main: Path | None
    """The view of the main file (the first shard of a split model); None if it has no model file."""
    views: tuple[Path, ...]


def label(entry: LockedModel, file: LockedFile) -> str:
    if entry.source == "oci":
        return f"{entry.registry}/{entry.repository}/{file.path}"
    return f"{entry.repo}/{file.path}" if entry.source == "hf" else f"{entry.url}"


def artifact_repositories(current: Lock, names: list[str]) -> list[str]:
    """``REGISTRY/REPOSITORY`` of each ``oci`` model among ``names``: the registries to open."""
    entries = [current.models[name] for name in names]
    return sorted({f"{e.registry}/{e.repository}" for e in entries if e.source == "oci"})


def download_jobs(
    current: Lock,
    names: list[str],
    endpoint: str,
    remotes: Sequence[Source] = (),
    *,
    own: bool = True,
    registries: Mapping[str, Source] | None = None,
) -> dict[str, FileJob]:
    """One download job per distinct content: identical files in two repos are fetched once.

    Each job asks ``remotes`` first (sources that serve any blob, such as a store folder), in
    order, then the file's own place (unless ``own`` is False: ``--no-hub``): its repo on
    ``endpoint``, its URL, or its artifact's repository among ``registries`` (by
    ``REGISTRY/REPOSITORY``, opened by the caller only where a blob is missing). Jobs carry no
    token yet: ``with_token`` adds it to the ones that will really download.
    """
    from alex_models.download import FileJob  # noqa: PLC0415 - the downloader, only when jobs are made
    from alex_models.sources import HubSource, UrlSource  # noqa: PLC0415

    jobs: dict[str, FileJob] = {}
    for sha256, (name, entry, file) in distinct_files(current, names).items():
        origin: Source | None
        if entry.source == "hf" and entry.repo is not None and entry.commit is not None:
            origin = HubSource(endpoint, entry.repo, entry.commit, file.path)
        elif entry.source == "oci":
            origin = (registries or {}).get(f"{entry.registry}/{entry.repository}")
        else:
            origin = UrlSource(str(entry.url))
        sources = (*remotes, origin) if own and origin is not None else tuple(remotes)
        jobs[sha256] = FileJob(sha256, file.size, sources, label(entry, file), model=name)
    return jobs


def distinct_files(current: Lock, names: list[str]) -> dict[str, tuple[str, LockedModel, LockedFile]]:
    """Each distinct content of these models once, in lock order, by SHA256: the first model,
    entry and file that name it (identical files in two repos are one blob)."""
    found: dict[str, tuple[str, LockedModel, LockedFile]] = {}
    for name in names:
        entry = current.models[name]
        for file in entry.files:
            found.setdefault(file.sha256, (name, entry, file))
    return found


def with_token(jobs: list[FileJob], endpoint: str, token: str | None = None) -> list[FileJob]:
    """The jobs, with the Hub token on their Hub sources at ``endpoint`` (never to another host).

    ``token`` None looks it up, which loads huggingface_hub, so a sync with nothing to fetch
    never does; ``""`` sends none.
    """
    from alex_models.sources import HubSource  # noqa: PLC0415 - jobs exist, so sources are loaded

    def at_endpoint(source: Source) -> TypeGuard[HubSource]:
        return isinstance(source, HubSource) and source.endpoint == endpoint

    if not any(at_endpoint(source) for job in jobs for source in job.sources):
        return jobs
    if token is None:
        from alex_models.fetch import hub_token  # noqa: PLC0415

        token = hub_token()
    return [
        replace(job, sources=tuple(replace(s, token=token) if at_endpoint(s) else s for s in job.sources))
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
            if file.path.lower().endswith(".gguf"):
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
            f"not enough disk space in {store.home}: {human_size(needed)} needed, {human_size(free)} free",
            hint="free some space (alex-models gc), or point ALEX_MODELS_HOME at a larger disk",
        )


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
    warn: Callable[[str], None] | None = None,
) -> set[str]:
    """Fetch ``missing``; the SHA256s this process downloaded (not those another process brought).

    ``warn`` is told when a source sends wrong bytes and the next one serves the file.
    Ctrl-C or SIGTERM (a ``KeyboardInterrupt`` here) cancels every download; each checkpoints what
    arrived and stops within moments, and ``Interrupted`` says how much ``command`` resumes from.
    """
    from alex_models._futures import run_interruptibly  # noqa: PLC0415
    from alex_models.download import Downloader  # noqa: PLC0415
    from alex_models.fetch import new_client  # noqa: PLC0415
    from alex_models.ggufinfo import check_gguf  # noqa: PLC0415

    def check(partial: Path, job: FileJob) -> None:
        for repo_path, label in checks.get(job.sha256, ()):
            check_gguf(partial, repo_path, label=label)

    own_client = client is None
    http = client or new_client()
    try:
        # A caller's own client keeps its settings (proxy, CA, auth) for every byte: no kept connections.
        downloader = Downloader(
            store, http, options=options, progress=progress, check=check, warn=warn, keep_alive=own_client
        )
        fetched = run_interruptibly(
            downloader.fetch,
            missing,
            workers=jobs,
            # On a failure, files not started yet are not started; the running ones finish.
            stop=downloader.cancel,
            said=lambda _: f"interrupted; {human_size(downloader.kept)} kept, run {command} again to resume",
            grace=_STOP_WAIT,
        )
        # fetch() is False when a concurrent sync stored the blob while this one waited for its lock.
        return {job.sha256 for job, stored in zip(missing, fetched, strict=True) if stored}
    finally:
        if own_client:
            http.close()


def link_views(store: Store, name: str, entry: LockedModel) -> SyncedModel:
    main = entry.main_file
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
