"""``StoreCatalogue``: the repos, commits and files of locks, with the bytes from a store's blobs.

What ``mirror serve --store`` serves. Each ``hf`` entry of a lock adds its repo, its commit with the
locked files, and its locked revision as a ref (``main`` answers the locked commit; the full
commit always works). Nothing else exists: another repo, revision or file gets the Hub's error.

Every file is listed as an LFS file: a lock knows each file's SHA256 and size, not its git blob
id, and the SHA256 is the etag clients name their cached blob by. Listing needs no bytes, so a
locked file whose blob is not in the store is still listed; serving it goes through
``StoreCatalogue.fetch_missing``, the one place pull-through plugs in (``upstream.pull_missing``;
without it, the file is answered as missing).

The locks are read again when one of them (or, by default, the store's registry of locks that
synced into it) changes, so a ``sync`` or ``gc`` on the store shows while the mirror runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from alex_models._ids import COMMIT_RE
from alex_models.errors import AlexModelsError, UserError
from alex_models.hubfiles import git_blob_sha1, lfs_pointer
from alex_models.lock import LockedFile, LockedModel, loads
from alex_models.mirror.catalogue import MissingBytes
from alex_models.mirror.repos import (
    NoSuchRepo,
    Refs,
    RepoFile,
    RepoSettings,
    Snapshot,
    build_snapshot,
    resolve_revision,
)
from alex_models.store import Store

FetchMissing = Callable[[str, str, LockedFile], None]
"""Pull-through: put the verified bytes of ``file`` (of repo, at commit) into the store, or raise
``MissingBytes`` or ``FetchFailed``. Called with the repo id, the commit and the file as its lock
gives it (the listed ``RepoFile`` was made from it)."""


def answer_missing(repo: str, commit: str, file: LockedFile) -> None:
    """Without pull-through, a locked file that is not in the store is not here."""
    raise MissingBytes(f"{repo}@{commit}: {file.path}")


@dataclass
class _LockedRepo:
    """What the locks say about one repo: its commits' files, and its locked revisions."""

    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, RepoFile]] = field(default_factory=dict)
    locked: dict[str, dict[str, LockedFile]] = field(default_factory=dict)
    """The lock's own entry of each listed file, by commit and path: what pull-through fetches."""
    dates: dict[str, datetime] = field(default_factory=dict)
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    """Each commit's snapshot, built on first use: the locks' files do not change until they are
    read again, which makes a new ``_LockedRepo``."""


class StoreCatalogue:
    """The repos of ``lock_paths`` (None: the locks registered with ``store``), served from
    ``store``. With ``tokens``, every repo is private to them (``--token-file``)."""

    def __init__(
        self,
        store: Store,
        lock_paths: Sequence[Path] | None = None,
        *,
        tokens: frozenset[str] = frozenset(),
        fetch_missing: FetchMissing = answer_missing,
        warn: Callable[[str], None] = lambda line: None,
    ) -> None:
        if not (store.home / "blobs").is_dir():
            raise UserError(
                f"{store.home} is not an alex-models store (it has no blobs/ folder)",
                hint="give the store's folder (ALEX_MODELS_HOME), or run 'alex-models sync' there first",
            )
        self.store = store
        self.fetch_missing = fetch_missing
        self._lock_paths = None if lock_paths is None else [p.absolute() for p in lock_paths]
        self._settings = RepoSettings(private=bool(tokens), tokens=tokens)
        self._warn = warn
        self._lock = threading.Lock()
        self._seen: tuple[object, ...] | None = None
        self._repos: dict[str, _LockedRepo] = {}
        self._verified: dict[str, tuple[int, int, int]] = {}
        self._refresh(at_start=True)

    @property
    def repo_ids(self) -> list[str]:
        self._refresh()
        return sorted(self._repos)

    def repo(self, repo_id: str) -> StoreRepo:
        self._refresh()
        locked = self._repos.get(repo_id)
        if locked is None:
            raise NoSuchRepo(repo_id)
        return StoreRepo(repo_id, locked, self)

    def all_tokens(self) -> frozenset[str]:
        return self._settings.tokens

    @property
    def settings(self) -> RepoSettings:
        return self._settings

    def has_bytes(self, file: RepoFile) -> bool:
        """Whether the file's verified blob is in the store; each blob is checked once per process
        (``Store.has_blob`` re-hashes one without a stat record, as on a read-only store)."""
        sha256 = file.etag  # every file of a lock is listed as LFS: its etag is its SHA256
        try:
            st = file.disk_path.stat()
        except OSError:
            return False
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            if self._verified.get(sha256) == key:
                return True
        if not self.store.has_blob(sha256, file.size):
            return False
        with self._lock:
            self._verified[sha256] = key
        return True

    # -- reading the locks ---------------------------------------------------------------------------

    def _locks(self) -> list[tuple[Path, tuple[int, int, int] | None]]:
        """The locks to read, in order, each with its ``_stat_key`` (one stat per lock)."""
        if self._lock_paths is not None:
            return [(p, _stat_key(p)) for p in self._lock_paths]
        # Oldest first: where two locks pin a branch at different commits, the one written last
        # names it (with --lock, the one given last).
        keyed = [(path, _stat_key(path)) for path in map(Path, self.store.registered_locks())]
        return sorted(keyed, key=lambda lock: lock[1] or (0,))

    def _refresh(self, *, at_start: bool = False) -> None:
        """Read the locks again if one changed. At start a bad lock is an error; later the mirror
        keeps serving what it read last, and says why once."""
        # The registry is stat'ed before it is read: a change in between shows at the next request.
        registry = _stat_key(self.store.home / "state" / "locks.json")
        locks = self._locks()
        seen = (registry, *((str(path), key) for path, key in locks))
        if seen == self._seen:
            return
        with self._lock:
            if seen == self._seen:
                return
            try:
                repos = self._read([path for path, _ in locks])
            except AlexModelsError as exc:
                if at_start:
                    raise
                self._warn(f"mirror: warning: keeping the catalogue read before: {exc.message}")
            else:
                self._repos = repos
            self._seen = seen

    def _read(self, locks: list[Path]) -> dict[str, _LockedRepo]:
        repos: dict[str, _LockedRepo] = {}
        explicit = self._lock_paths is not None
        for lock_path in locks:
            try:
                text = lock_path.read_text(encoding="utf-8")
                date = datetime.fromtimestamp(lock_path.stat().st_mtime, tz=UTC)
            except FileNotFoundError:
                if explicit:
                    raise UserError(
                        f"{lock_path} does not exist", hint="give --lock an existing models.lock"
                    ) from None
                continue  # a registered lock deleted since: gc forgets it too
            for entry in loads(text, str(lock_path)).models.values():
                if entry.repo is None or entry.commit is None:
                    continue  # a url: entry is not a Hub repo
                repo = repos.setdefault(entry.repo, _LockedRepo())
                self._add(repo, lock_path, entry.repo, entry.commit, entry, date)
        return repos

    def _add(
        self,
        repo: _LockedRepo,
        lock_path: Path,
        repo_id: str,
        commit: str,
        entry: LockedModel,
        date: datetime,
    ) -> None:
        files = repo.commits.setdefault(commit, {})
        entries = repo.locked.setdefault(commit, {})
        repo.dates.setdefault(commit, date)
        for locked in entry.files:
            known = files.get(locked.path)
            if known is not None and (known.sha256, known.size) != (locked.sha256, locked.size):
                raise UserError(
                    f"{lock_path} locks {repo_id}@{commit} {locked.path} with other bytes "
                    "than another lock of this mirror",
                    hint="a commit's files never change: one of the locks was edited; lock it again",
                )
            oid = git_blob_sha1(lfs_pointer(locked.sha256, locked.size))
            blob = self.store.blob_path(locked.sha256)
            files[locked.path] = RepoFile(locked.path, locked.size, oid, locked.sha256, blob)
            entries[locked.path] = locked
        self._add_ref(repo, lock_path, repo_id, entry.revision or commit, commit)

    def _add_ref(self, repo: _LockedRepo, lock_path: Path, repo_id: str, revision: str, commit: str) -> None:
        if COMMIT_RE.fullmatch(revision):
            return  # locked by commit: the commit itself resolves
        names, name = repo.branches, revision.removeprefix("refs/heads/")
        if revision.startswith("refs/tags/"):
            names, name = repo.tags, revision.removeprefix("refs/tags/")
        before = names.get(name)
        if before is not None and before != commit:
            # Two locks pinned the same branch at different times: the later one names it; both
            # commits stay reachable by their id.
            self._warn(
                f"mirror: warning: {repo_id} {revision} is locked at {before[:12]} and, in {lock_path}, "
                f"at {commit[:12]}; {revision} answers {commit[:12]}"
            )
        names[name] = commit


class StoreRepo:
    """One repo of a ``StoreCatalogue``."""

    def __init__(self, repo_id: str, locked: _LockedRepo, catalogue: StoreCatalogue) -> None:
        self.id = repo_id
        self._locked = locked
        self._catalogue = catalogue

    @property
    def settings(self) -> RepoSettings:
        return self._catalogue.settings

    @property
    def refs(self) -> Refs:
        return Refs(branches=dict(self._locked.branches), tags=dict(self._locked.tags))

    def resolve(self, revision: str) -> str:
        return resolve_revision(self.refs, revision, lambda commit: commit in self._locked.commits)

    def snapshot(self, commit: str) -> Snapshot:
        locked = self._locked
        snapshot = locked.snapshots.get(commit)
        if snapshot is None:  # racing threads build the same one: no lock needed
            snapshot = build_snapshot(commit, locked.commits[commit], locked.dates[commit])
            locked.snapshots[commit] = snapshot
        return snapshot

    def local_file(self, commit: str, item: RepoFile) -> RepoFile:
        if not self._catalogue.has_bytes(item):
            # The place pull-through plugs in: the file is locked, its blob is not in the store.
            self._catalogue.fetch_missing(self.id, commit, self._locked.locked[commit][item.path])
        return item


def _stat_key(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
