"""Use cases of the air-gapped bundle (``alex_models.bundle`` is its format): ``bundle create``
writes the lock, the manifest and the locked blobs into one tar, straight from the store;
``bundle import`` streams one into the store, each blob verified before it enters ``blobs/``."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from alex_models._fs import atomic_write
from alex_models._units import MiB, human_size
from alex_models.api._context import require_lock, select_models, store_for
from alex_models.api._push import RemoteBlob, locked_blobs, require_synced
from alex_models.bundle import Bundle, Member, write_bundle
from alex_models.download import FileJob, NoProgress, Progress
from alex_models.errors import IntegrityError, Interrupted, UserError, exit_code_of
from alex_models.lock import Lock, loads
from alex_models.store import Store, blob_key, published_keys

_TEXT_AT_MOST = 64 * MiB
"""A lock or manifest larger than this is no lock: it is not read into memory."""


@dataclass(frozen=True)
class BundleResult:
    """What ``bundle create`` wrote."""

    path: Path
    lock_key: str
    """The lock's member (``locks/<sha256 of its text>.lock``), as ``push`` names it."""
    manifest_key: str | None
    """The manifest's member beside it (``.yaml``); None when the project has no manifest."""
    blobs: tuple[RemoteBlob, ...]
    size: int
    """Bytes of the tar file."""
    seconds: float

    @property
    def blob_bytes(self) -> int:
        return sum(blob.size for blob in self.blobs)


@dataclass(frozen=True)
class ImportResult:
    """What ``bundle import`` brought into the store."""

    bundle: Path
    store: Path
    lock_key: str
    imported: tuple[RemoteBlob, ...]
    """Blobs written into the store, each verified against its name and the bundle's lock."""
    skipped: tuple[RemoteBlob, ...]
    """Blobs the store already held."""
    complete: tuple[str, ...]
    """Models of the bundle's lock whose every blob the store now holds."""
    incomplete: tuple[str, ...]
    """The others: the bundle was created with ``--only``."""
    written: tuple[Path, ...]
    """The lock and manifest written with ``to``."""
    seconds: float

    @property
    def bytes_imported(self) -> int:
        return sum(blob.size for blob in self.imported)


def bundle_create(
    out: Path,
    manifest_path: Path = Path("models.yaml"),
    *,
    only: tuple[str, ...] = (),
    lock_path: Path | None = None,
    store_home: Path | None = None,
    progress: Progress | None = None,
) -> BundleResult:
    """Write the lock, the manifest and every blob the lock pins for the selected models into the
    tar ``out``, read from the store as the tar is written. ``out`` appears only once complete;
    nothing is written unless every selected blob is synced locally."""
    began = time.monotonic()
    lock_path, current = require_lock(manifest_path, lock_path)
    blobs = locked_blobs(current, select_models(current, only))
    store = store_for(manifest_path, store_home)
    require_synced(store, blobs, f"no {out} was written")
    text = lock_path.read_bytes()
    lock_key, beside = published_keys(text)
    manifest_key = beside if manifest_path.exists() else None
    files = [(lock_key, text)]
    if manifest_key is not None:
        files.append((manifest_key, manifest_path.read_bytes()))
    shown = _Shown(progress or NoProgress(), {blob_key(b.sha256): b for b in blobs})
    try:
        size = write_bundle(
            out, files, [(blob_key(b.sha256), store.blob_path(b.sha256)) for b in blobs], shown
        )
        shown.done()
    except KeyboardInterrupt as stop:
        raise Interrupted(f"interrupted; no {out} was written", exit_code=exit_code_of(stop)) from None
    except OSError as exc:
        raise UserError(
            f"cannot write the bundle {out}: {exc.strerror or exc}",
            hint="check that its folder exists, is writable and has room for the blobs",
        ) from None
    return BundleResult(out, lock_key, manifest_key, tuple(blobs), size, time.monotonic() - began)


def bundle_import(
    path: Path,
    manifest_path: Path = Path("models.yaml"),
    *,
    to: Path | None = None,
    store_home: Path | None = None,
    progress: Progress | None = None,
) -> ImportResult:
    """Stream the bundle at ``path`` into the store (the one ``manifest_path``'s commands use),
    each blob checked against its name and the bundle's lock before it enters ``blobs/``; blobs the
    store holds are skipped. With ``to``, the bundle's lock and manifest are then written there as
    ``models.lock`` and ``models.yaml`` (replacing those), and the lock is registered for ``gc``.

    A damaged blob is exit 3 naming it; a failure or an interrupt leaves no partial blob (those
    verified before it stay, and a rerun skips them), and writes nothing to ``to``.
    """
    began = time.monotonic()
    store = store_for(manifest_path, store_home)
    store.require_writable(f"bundle import writes {path}'s blobs into it")
    if to is not None and to.exists() and not to.is_dir():
        raise UserError(f"--to {to} is not a folder", hint="name the folder to write models.lock into")
    with Bundle.open(path) as bundle:
        store.init()
        importing = _Import(bundle, store, progress or NoProgress())
        try:
            read = importing.run()
        except KeyboardInterrupt as stop:
            raise Interrupted(
                f"interrupted; {len(importing.imported)} blob(s) imported, none half-written; "
                "run the import again for the rest",
                exit_code=exit_code_of(stop),
            ) from None
    written = [] if to is None else _write_project(to, read)
    if written:
        store.register_lock(written[0])  # gc keeps what was imported
    models = sorted(read.lock.models)
    complete = {
        name
        for name in models
        if all(store.has_blob(b.sha256, b.size) for b in locked_blobs(read.lock, [name]))
    }
    return ImportResult(
        bundle=path,
        store=store.home,
        lock_key=read.member.name,
        imported=tuple(importing.imported),
        skipped=tuple(importing.skipped),
        complete=tuple(name for name in models if name in complete),
        incomplete=tuple(name for name in models if name not in complete),
        written=tuple(written),
        seconds=time.monotonic() - began,
    )


class _Shown:
    """``write_bundle``'s reads, as a progress shows a download: the blobs one after the other."""

    def __init__(self, progress: Progress, blobs: dict[str, RemoteBlob]) -> None:
        self.progress = progress
        self.jobs = {key: blob.shown() for key, blob in blobs.items()}
        self.current: FileJob | None = None

    def __call__(self, key: str, count: int) -> None:
        job = self.jobs[key]
        if job is not self.current:
            self.done()
            self.progress.started(job, 0)
            self.current = job
        self.progress.advanced(job, count)

    def done(self) -> None:
        if self.current is not None:
            self.progress.finished(self.current)
            self.current = None


def _write_project(to: Path, read: _Read) -> list[Path]:
    """The bundle's lock and manifest as ``to/models.lock`` and ``to/models.yaml``, each replaced
    whole; the lock first."""
    files = [(to / "models.lock", read.text)]
    if read.manifest is not None:
        files.append((to / "models.yaml", read.manifest))
    for path, data in files:
        try:
            atomic_write(path, data)
        except OSError as exc:
            raise UserError(
                f"every blob was imported, but {path} cannot be written: {exc.strerror or exc}",
                hint="check the folder's permissions, then import again (the blobs are skipped)",
            ) from None
    return [path for path, _ in files]


@dataclass(frozen=True)
class _Read:
    """What an import read besides the blobs."""

    member: Member
    """The lock's member."""
    text: bytes
    lock: Lock
    manifest: bytes | None


class _Import:
    """One pass over a bundle: its lock first (checked against its name), its manifest, then each
    blob into the store."""

    def __init__(self, bundle: Bundle, store: Store, progress: Progress) -> None:
        self.bundle = bundle
        self.store = store
        self.progress = progress
        self.imported: list[RemoteBlob] = []
        self.skipped: list[RemoteBlob] = []

    def run(self) -> _Read:
        """Import every blob; what the bundle said besides."""
        members = self.bundle.members()
        first = next(members, None)
        if first is None or first.kind != "lock":
            raise self._out_of_order(first, "a lock first")
        text = self._small(first)
        if hashlib.sha256(text).hexdigest() != first.digest:
            raise IntegrityError(
                f"{self.bundle.path}: {first.name} holds another lock than its name says",
                hint="the bundle was edited or damaged: copy it again",
            )
        try:
            lock = loads(text.decode("utf-8"), f"{self.bundle.path}:{first.name}")
        except UnicodeDecodeError:
            raise IntegrityError(f"{self.bundle.path}: {first.name} is not text") from None
        pinned = {blob.sha256: blob for blob in locked_blobs(lock, sorted(lock.models))}
        manifest = None
        for member in members:
            if member.kind == "manifest" and member.digest == first.digest and manifest is None:
                if self.imported or self.skipped:
                    raise self._out_of_order(member, "its manifest before the blobs")
                manifest = self._small(member)
            elif member.kind != "blob":
                raise self._out_of_order(member, "one lock and its manifest")
            else:
                self._blob(member, pinned)
        return _Read(first, text, lock, manifest)

    def _blob(self, member: Member, pinned: dict[str, RemoteBlob]) -> None:
        blob = pinned.get(member.digest)
        if blob is None:
            raise IntegrityError(
                f"{self.bundle.path}: {member.name} is no blob its lock pins",
                hint="the bundle was edited: create it again from the project",
            )
        if member.size != blob.size:
            raise IntegrityError(
                f"{self.bundle.path}: {member.name} holds {human_size(member.size)}, "
                f"the lock pins {human_size(blob.size)} for {blob.label}",
                hint="nothing of it was stored; the bundle is damaged: copy it again",
            )
        with self.store.blob_lock(blob.sha256):  # a sync fetching the same blob meanwhile waits
            if self.store.has_blob(blob.sha256, blob.size):
                self.skipped.append(blob)
                return
            self._write(member, blob)
        self.imported.append(blob)

    def _write(self, member: Member, blob: RemoteBlob) -> None:
        """Through the store's own path: ``tmp/<sha256>.part``, hashed as it is written, promoted
        only if its SHA256 is the one its name says; removed on any failure."""
        partial = self.store.partial_path(blob.sha256)
        digest = hashlib.sha256()
        shown = blob.shown()
        self.progress.started(shown, 0)
        try:
            try:
                with partial.open("wb") as out:
                    for piece in self.bundle.chunks(member):
                        digest.update(piece)
                        out.write(piece)
                        self.progress.advanced(shown, len(piece))
            except OSError as exc:
                raise UserError(
                    f"cannot write {blob.label} into the store {self.store.home}: {exc.strerror or exc}",
                    hint="check the store's free space and permissions",
                ) from None
            self._check(member, blob, digest.hexdigest())
            self.store.promote(partial, blob.sha256)
            self.progress.finished(shown)
        except BaseException:
            partial.unlink(missing_ok=True)
            self.store.progress_path(blob.sha256).unlink(missing_ok=True)  # it described other bytes
            raise

    def _check(self, member: Member, blob: RemoteBlob, actual: str) -> None:
        if actual != blob.sha256:
            raise IntegrityError(
                f"{self.bundle.path}: {member.name} ({blob.label}) holds other bytes than its name "
                f"says (SHA256 {actual})",
                hint="nothing of it was stored; the bundle is damaged or was edited: copy it again",
            )

    def _small(self, member: Member) -> bytes:
        if member.size > _TEXT_AT_MOST:
            raise UserError(
                f"refusing {self.bundle.path}: {member.name} is {human_size(member.size)}, "
                "too large for a lock or a manifest",
                hint="use a bundle written by 'alex-models bundle create'",
            )
        return b"".join(self.bundle.chunks(member))

    def _out_of_order(self, member: Member | None, expected: str) -> UserError:
        found = "nothing" if member is None else member.name
        return UserError(
            f"refusing {self.bundle.path}: found {found} where a bundle holds {expected}",
            hint="a bundle holds its lock, its manifest, then blobs: use one written by "
            "'alex-models bundle create'",
        )
