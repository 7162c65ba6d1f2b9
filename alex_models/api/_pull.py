"""Use case ``pull``: one file without a manifest, through the same store and verified downloader."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx2
from pydantic import ValidationError

from alex_models._fs import atomic_write, link_atomically, safe_relpath
from alex_models.api._context import store_for
from alex_models.api._materialize import (
    check_space,
    download_jobs,
    download_missing,
    gguf_checks,
    link_views,
    with_token,
)
from alex_models.api._project import gather_facts
from alex_models.download import NoProgress, Progress
from alex_models.errors import IntegrityError, UserError
from alex_models.lock import dumps
from alex_models.manifest import Manifest
from alex_models.remote import Remote
from alex_models.resolve import resolve
from alex_models.settings import Settings


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
    manifest = _one_model_manifest(repo, file, revision)
    settings = Settings.from_env()
    owned = remote is None
    source = remote or HubRemote(
        settings.endpoint,
        offline=settings.offline,
        offline_hint="pull needs the network: unset HF_HUB_OFFLINE to pull",
    )
    try:
        single = resolve(manifest, gather_facts(manifest, None, True, source), None, True)
    finally:
        if owned and isinstance(source, HubRemote):
            source.close()
    entry = single.models["pull"]
    requested = next(f for f in entry.files if f.path == file)
    if sha256 is not None and requested.sha256 != sha256.lower():
        raise IntegrityError(
            f"{repo}/{file} at {str(entry.commit)[:12]} has SHA256 {requested.sha256}, not {sha256}",
            hint="check --sha256, or the revision",
        )
    store = store_for(None, store_home).init()
    if store.writable:  # a read-only store serves what it holds; nothing there can be collected
        # Registered before the download, as sync registers its lock: gc keeps what pull fetched (and
        # a partial download of it) until the user deletes this lock or runs 'gc --forget-pulls'.
        pull_lock = store.pull_lock_path(repo, file)
        atomic_write(pull_lock, dumps(single).encode())
        store.register_lock(pull_lock)
    wanted = download_jobs(single, ["pull"], settings.endpoint)
    missing = with_token(
        # No model to name: no lock to fix either, if the Hub's answers contradict each other.
        [replace(job, model=None) for job in wanted.values() if not store.has_blob(job.sha256, job.size)],
        settings.endpoint,
    )
    check_space(store, missing)
    if missing:
        download_missing(
            store,
            missing,
            progress or NoProgress(),
            jobs=4,
            client=client,
            options=None,
            checks=gguf_checks(single, ["pull"]),
            command="pull",
        )
    synced = link_views(store, "pull", entry)
    view = store.view_path(entry, requested)
    if directory is None:
        return view
    return _place(synced.views, store.view_path(entry, requested), directory)


def _one_model_manifest(repo: str, file: str, revision: str) -> Manifest:
    """What ``pull`` asks for, as a one-model manifest: it is locked by the same resolver as any
    other (shards, hashes, roles), and refused with the manifest's own words."""
    try:
        return Manifest.model_validate(
            {"version": 1, "models": {"pull": {"repo": repo, "revision": revision, "file": file}}}
        )
    except ValidationError as exc:
        problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise UserError(
            f"cannot pull {file} from {repo}@{revision}: {problem}",
            hint="e.g. 'alex-models pull Qwen/Qwen2.5-0.5B-Instruct-GGUF qwen2.5-0.5b-instruct-q4_k_m.gguf'",
        ) from None


def _place(views: tuple[Path, ...], requested: Path, directory: Path) -> Path:
    """Put the pulled files in ``directory``: hard links where possible, copies otherwise."""
    directory.mkdir(parents=True, exist_ok=True)
    for view in views:
        target = directory / view.name
        if not (target.exists() and target.samefile(view)):
            link_atomically(target, view, fallback="copy")
    return directory / requested.name
