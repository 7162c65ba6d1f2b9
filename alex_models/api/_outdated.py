"""``outdated``: which locked models upstream has moved since the lock, without writing anything.

A model pinned from a branch or tag (of a Hub repo, or a registry's ``oci: …:TAG``) is resolved
again exactly as ``lock --upgrade-model NAME`` would resolve it (``relock``, the same code), from
the input the lock recorded for it: an edit to ``models.yaml`` is ``lock --check``'s business, not
an upstream move. The new entry is compared with the locked one (``lockdiff``): a new commit or
manifest digest, files added, removed or with other bytes.

Requests: one per repo and revision (plus one download per plain git file, as ``lock``), the
manifest, config and layer ``HEAD``s of each registry artifact, all at once. A repo that vanished
or went gated, or a revision that no longer selects the files, is reported on its model; an
endpoint that cannot be reached fails the whole command (exit 4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from alex_models._ids import COMMIT_RE
from alex_models.api._context import require_lock, select_models
from alex_models.api._project import hub_remote, in_parallel, relock
from alex_models.errors import UserError
from alex_models.lock import Lock, LockedModel
from alex_models.lockdiff import ModelChange, model_change
from alex_models.manifest import Manifest, ModelSpec
from alex_models.remote import Remote
from alex_models.resolve import ResolveError

OutdatedStatus = Literal["outdated", "current", "pinned", "unchecked", "error"]
"""``outdated``: ``lock --upgrade`` would change the entry; ``current``: it would not; ``pinned``:
the revision is a full commit (or the ``oci`` reference a digest), which cannot move;
``unchecked``: a ``url:`` source, which has no revision to move; ``error``: the repo or revision
cannot be resolved any more (``problem`` says why)."""


@dataclass(frozen=True)
class OutdatedModel:
    """One locked model, and what upstream holds for it now."""

    name: str
    status: OutdatedStatus
    locked: LockedModel
    current_commit: str | None = None
    """The commit the locked revision names now, or the digest the locked tag names now
    (``outdated`` and ``current`` only)."""
    change: ModelChange | None = None
    """How ``lock --upgrade`` would change the entry (``outdated`` only)."""
    problem: UserError | None = None
    """Why the model could not be checked (``error`` only)."""


@dataclass(frozen=True)
class OutdatedResult:
    """What ``outdated`` found, model by model, sorted by name."""

    lock_path: Path
    models: tuple[OutdatedModel, ...]

    @property
    def outdated(self) -> tuple[str, ...]:
        """The models ``lock --upgrade`` would change."""
        return tuple(m.name for m in self.models if m.status == "outdated")

    @property
    def failed(self) -> tuple[str, ...]:
        """The models whose repo or revision cannot be resolved any more."""
        return tuple(m.name for m in self.models if m.status == "error")


def outdated(
    names: Iterable[str] = (),
    manifest_path: Path = Path("models.yaml"),
    lock_path: Path | None = None,
    *,
    remote: Remote | None = None,
) -> OutdatedResult:
    """Whether upstream moved each locked model (``names``, else all) pinned from a branch or tag."""
    lock_path, current = require_lock(manifest_path, lock_path)
    chosen = select_models(current, names)
    movable: dict[tuple[str, str], list[str]] = {}
    for name in chosen:
        entry = current.models[name]
        # A preset's draft is checked with its model: re-resolving that reads the preset again.
        owner = current.models.get(entry.preset_of or name, entry)
        if entry.repo is not None and entry.revision is not None and not COMMIT_RE.fullmatch(entry.revision):
            movable.setdefault((str(owner.repo), str(owner.revision)), []).append(name)
        elif entry.source == "oci" and entry.tag is not None and entry.input.oci is not None:
            movable.setdefault((entry.input.oci, ""), []).append(name)  # a tag can move; a digest cannot
    groups = sorted(movable.values())
    locked_inputs = _as_manifest(current)
    found = {name: _verdict(name, current.models[name], None) for name in chosen}
    if groups:  # pinned commits and URLs alone ask nothing, so they are reported offline too
        with hub_remote(remote) as opened:
            answers = in_parallel(groups, lambda group: _recheck(locked_inputs, current, group, opened))
        for answer in answers:
            found.update(
                (name, _verdict(name, current.models[name], fresh)) for name, fresh in answer.items()
            )
    return OutdatedResult(lock_path, tuple(found[name] for name in chosen))


def _recheck(
    locked_inputs: Manifest, current: Lock, group: list[str], remote: Remote
) -> dict[str, LockedModel | UserError]:
    """Each model of ``group`` (one repo and revision) as ``lock --upgrade`` would lock it now, or
    why it cannot be.

    A repo that fails is reported on its own models and the others are still checked; a network
    failure (``RemoteError``) stops everything, as it stops ``lock``.
    """
    upgrade = frozenset(current.models[name].preset_of or name for name in group)
    try:
        fresh = relock(locked_inputs, current, upgrade, remote)
    except ResolveError as exc:
        if len(group) == 1:
            return {group[0]: exc}
        # The new revision lacks what one model selects: ask again one model at a time (one more
        # request each, on this path only), so that model alone is reported and the others checked.
        return {
            name: answer
            for one in group
            for name, answer in _recheck(locked_inputs, current, [one], remote).items()
        }
    except UserError as exc:
        return dict.fromkeys(group, exc)
    return {name: fresh.models.get(name) or _gone(name, current.models[name]) for name in group}


def _gone(name: str, locked: LockedModel) -> UserError:
    """A preset's draft the model's preset no longer names."""
    return UserError(
        f"{name}: the repo preset of model {locked.preset_of!r} no longer names a draft",
        hint=f"run 'alex-models lock --upgrade-model {locked.preset_of}'",
    )


def _verdict(name: str, locked: LockedModel, fresh: LockedModel | UserError | None) -> OutdatedModel:
    if fresh is None:
        return OutdatedModel(name, "unchecked" if locked.source == "url" else "pinned", locked)
    if isinstance(fresh, UserError):
        return OutdatedModel(name, "error", locked, problem=fresh)
    change = model_change(name, locked, fresh)
    return OutdatedModel(name, "current" if change is None else "outdated", locked, fresh.pin, change)


def _as_manifest(current: Lock) -> Manifest:
    """A manifest whose models are the lock's recorded inputs: resolving it with ``upgrade``
    re-resolves exactly those entries from what they were locked from, and keeps every other one."""
    return Manifest(
        version=1,
        models={
            name: ModelSpec(**entry.input.model_dump(exclude_none=True))
            for name, entry in current.models.items()
            if entry.preset_of is None  # it comes with its model
        },
    )
