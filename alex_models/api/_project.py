"""Use cases on the project's files: ``init``, ``add``, ``lock``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from alex_models._fs import atomic_write
from alex_models.api._context import default_lock_path, read_lock
from alex_models.emit.flags import ServerFlags
from alex_models.emit.repo_preset import repo_preset
from alex_models.errors import UserError
from alex_models.lock import Drift, Lock, drift, dumps
from alex_models.lockdiff import ModelChange, lock_changes
from alex_models.manifest import DEFAULT_REVISION, Manifest, load_manifest
from alex_models.manifest_edit import EMPTY_MANIFEST, STARTER_MANIFEST, model_name_for, with_model
from alex_models.presetini import PresetError
from alex_models.remote import Facts, PresetDraft, Remote, RepoSnapshot
from alex_models.resolve import Plan, Upgrade, plan, presets, resolve, unhashed
from alex_models.settings import Settings

K = TypeVar("K")


V = TypeVar("V")


MAX_PARALLEL_REQUESTS = 32
"""Metadata requests in flight at once while locking: 50 repos at 50 ms each lock in two rounds
(uv fetches 50 at once by default)."""


@dataclass(frozen=True)
class LockResult:
    """What ``lock`` found and did."""

    lock_path: Path
    drift: tuple[Drift, ...]
    """How the lock on disk differed from the manifest before this run."""
    resolved: tuple[str, ...]
    """Models resolved from the remote in this run."""
    written: bool
    """Whether the lock file changed on disk (never with ``check`` or ``dry_run``)."""
    changes: tuple[ModelChange, ...] = ()
    """The entries this run changed (or, with ``dry_run``, would change); empty with ``check``."""

    @property
    def stale(self) -> bool:
        return bool(self.drift)


def lock(
    manifest_path: Path = Path("models.yaml"),
    lock_path: Path | None = None,
    *,
    check: bool = False,
    dry_run: bool = False,
    upgrade: Upgrade = False,
    remote: Remote | None = None,
) -> LockResult:
    """Resolve ``manifest_path`` into its lock file, keeping the pins of unchanged models.

    With ``check``, nothing is resolved or written: the result says whether the lock is stale.
    With ``dry_run``, everything is resolved and nothing written: the result's ``changes`` say
    what the lock would get.
    """
    manifest = load_manifest(manifest_path)
    lock_path = lock_path or default_lock_path(manifest_path)
    previous = read_lock(lock_path)
    found = tuple(drift(manifest, previous))
    if check:
        return LockResult(lock_path, found, resolved=(), written=False)
    chosen = plan(manifest, previous, upgrade)
    new_lock = relock(manifest, previous, upgrade, remote)
    changes = tuple(lock_changes(previous, new_lock))
    text = dumps(new_lock)
    old_text = lock_path.read_text(encoding="utf-8") if previous is not None else None
    written = text != old_text and not dry_run
    if written:
        atomic_write(lock_path, text.encode())
    return LockResult(
        lock_path, found, resolved=tuple(sorted(chosen.resolve)), written=written, changes=changes
    )


def relock(manifest: Manifest, previous: Lock | None, upgrade: Upgrade, remote: Remote | None) -> Lock:
    """The lock ``lock`` would write now: kept entries, the rest resolved from fresh facts.

    The one computation behind ``lock``, ``lock --dry-run`` and ``outdated``, so what they
    report is what ``lock`` does.
    """
    if not plan(manifest, previous, upgrade).resolve:
        return resolve(manifest, Facts(), previous, upgrade)
    return resolve(manifest, gather_facts(manifest, previous, upgrade, remote), previous, upgrade)


@contextmanager
def hub_remote(remote: Remote | None) -> Iterator[Remote]:
    """``remote``, or (when None) the environment's Hub endpoint, opened here and closed on exit:
    its HTTP clients hold pooled sockets."""
    if remote is not None:
        yield remote
        return
    from alex_models.hub import HubRemote  # noqa: PLC0415 - huggingface_hub loads only when needed

    settings = Settings.from_env()
    owned = HubRemote(settings.endpoint, offline=settings.offline)
    try:
        yield owned
    finally:
        owned.close()


def gather_facts(manifest: Manifest, previous: Lock | None, upgrade: Upgrade, remote: Remote | None) -> Facts:
    """Ask the remote and the registries, concurrently, exactly what resolving the manifest needs;
    the Hub is not opened when only registry artifacts are to be resolved."""
    chosen = plan(manifest, previous, upgrade)
    artifacts = {}
    if chosen.artifacts:
        from alex_models.oci.artifact import read_artifact  # noqa: PLC0415 - only for oci: entries

        references = sorted(chosen.artifacts)
        artifacts = dict(zip(references, in_parallel(references, read_artifact), strict=True))
    if not chosen.repos and not chosen.urls:
        return Facts(artifacts=artifacts)
    with hub_remote(remote) as opened:
        return replace(_gather(chosen, opened), artifacts=artifacts)


def _gather(chosen: Plan, remote: Remote) -> Facts:
    repos = sorted(chosen.repos)
    snapshots = dict(zip(repos, in_parallel(repos, lambda key: remote.snapshot(*key)), strict=True))
    hashes, drafts = _read_presets(chosen, snapshots, remote)
    # A preset's draft comes from its repo's default branch, as llama.cpp downloads it.
    wheres = {
        (d.repo, DEFAULT_REVISION): d.where
        for d in sorted(drafts.values(), key=lambda d: d.where, reverse=True)
    }
    more = sorted(wheres.keys() - snapshots.keys())

    def draft_snapshot(key: tuple[str, str]) -> RepoSnapshot:
        try:
            return remote.snapshot(*key)
        except UserError as exc:  # a repo that is gone, gated or misspelt: say which preset named it
            raise UserError(f"{wheres[key]}: {exc.message}", hint=exc.hint) from None

    snapshots.update(zip(more, in_parallel(more, draft_snapshot), strict=True))
    urls = sorted(chosen.urls.items())
    url_files = in_parallel(urls, lambda item: remote.url_file(*item))
    files = sorted(item for item in unhashed(chosen, snapshots, drafts) if item[:3] not in hashes)
    hashed = in_parallel(files, lambda item: remote.file_sha256(*item))
    hashes.update((item[:3], sha256) for item, sha256 in zip(files, hashed, strict=True))
    return Facts(
        snapshots=snapshots,
        hashes=hashes,
        urls={url: found for (url, _), found in zip(urls, url_files, strict=True)},
        preset_drafts=drafts,
    )


def _read_presets(
    chosen: Plan, snapshots: dict[tuple[str, str], RepoSnapshot], remote: Remote
) -> tuple[dict[tuple[str, str, str], str], dict[str, PresetDraft]]:
    """Each repo preset the lock takes, read once: its SHA256, and the draft it points at. A preset
    that emit could not use fails here, at lock time, with its file and line."""
    found = presets(chosen, snapshots)
    # Models from one repo and commit share its preset: one request for it.
    files = sorted({(s.repo, s.commit, f.path, f.size) for _, s, f in found})
    bodies = dict(zip(files, in_parallel(files, lambda item: remote.file_bytes(*item)), strict=True))
    hashes = {item[:3]: hashlib.sha256(body).hexdigest() for item, body in bodies.items()}
    drafts: dict[str, PresetDraft] = {}
    for name, snapshot, preset in found:
        body = bodies[(snapshot.repo, snapshot.commit, preset.path, preset.size)]
        where = f"{snapshot.repo}/{preset.path}"
        wanted = chosen.resolve[name]
        text = _preset_text(body, where)
        # Read with llama.cpp's own spellings, not the installed build's: the lock is the same anywhere.
        draft = repo_preset(text, where, snapshot.repo, wanted.quant, ServerFlags()).draft
        if draft is not None:
            drafts[name] = draft
    return hashes, drafts


def _preset_text(body: bytes, where: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PresetError(f"{where}: not UTF-8 text (byte {exc.start})") from None


def in_parallel(items: list[K], work: Callable[[K], V]) -> list[V]:
    """``work`` over ``items``, MAX_PARALLEL_REQUESTS at a time, results in order; errors propagate."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_REQUESTS, len(items))) as pool:
        return list(pool.map(work, items))


def init(manifest_path: Path = Path("models.yaml")) -> Path:
    """Write the commented starter manifest; refuse to overwrite one."""
    if manifest_path.exists():
        raise UserError(
            f"{manifest_path} already exists", hint="edit it, or 'alex-models add REPO' to add a model"
        )
    atomic_write(manifest_path, STARTER_MANIFEST.encode())
    return manifest_path


@dataclass(frozen=True)
class AddResult:
    """The model ``add`` put in the manifest, and the lock that followed."""

    name: str
    """The model's name in ``models:`` (given, or made from the repo name)."""
    manifest_path: Path
    lock: LockResult
    """What locking the manifest with the new model did."""


def add(
    repo: str,
    files: list[str],
    *,
    quant: str | None = None,
    revision: str | None = None,
    name: str | None = None,
    manifest_path: Path = Path("models.yaml"),
    remote: Remote | None = None,
) -> AddResult:
    """Add a model to the manifest (keeping its comments and order), then lock.

    If locking fails, the manifest is put back as it was: ``add`` never leaves a manifest that
    does not lock.
    """
    if not files and quant is None:
        raise UserError(
            f"nothing to add from {repo}: give the files to add, or --quant",
            hint=f"e.g. 'alex-models add {repo} --quant Q4_K_M' (or name a file: '… {repo} model.gguf')",
        )
    if files and quant is not None:
        raise UserError(
            f"give the files to add from {repo}, or --quant, but not both",
            hint=f"e.g. 'alex-models add {repo} --quant {quant}'",
        )
    original = manifest_path.read_text(encoding="utf-8") if manifest_path.exists() else None
    name = name or model_name_for(repo)
    entry: dict[str, object] = {"repo": repo}
    if revision is not None:
        entry["revision"] = revision
    if quant is not None:
        entry["quant"] = quant
    elif len(files) == 1:
        entry["file"] = files[0]
    else:
        entry["files"] = list(files)
    text = with_model(original if original is not None else EMPTY_MANIFEST, name, entry, str(manifest_path))
    atomic_write(manifest_path, text.encode())
    try:
        result = lock(manifest_path, remote=remote)
    except BaseException:
        if original is None:
            manifest_path.unlink(missing_ok=True)
        else:
            atomic_write(manifest_path, original.encode())
        raise
    return AddResult(name=name, manifest_path=manifest_path, lock=result)
