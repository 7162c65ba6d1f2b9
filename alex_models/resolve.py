"""The resolver: manifest + remote facts + previous lock -> lock. Pure; no I/O.

Resolution goes in three steps, each a pure function, so the caller can fetch exactly the facts
the next step needs:

1. ``plan`` decides which models keep their locked entry (input unchanged, not upgraded) and
   which are resolved again, and so which repos and URLs must be asked about.
2. ``select`` (``alex_models.filepick``) picks each model's files from its repo's listing (quant
   labels, globs, shards, mmproj); ``presets`` lists the repo presets to read, for the draft they
   name (the caller reads them into ``Facts.preset_drafts``); ``unhashed`` lists the picked plain
   git files whose SHA256 the Hub does not report.
3. ``resolve`` builds the lock from kept entries and fresh facts.

Lock semantics follow uv's: an existing lock is respected (a moved branch does not change it),
removed models are dropped, and only ``upgrade`` re-resolves models whose input did not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from alex_models._fs import portable_name_problem, relpath_problem
from alex_models._ids import oci_reference
from alex_models.filepick import ResolveError, role_of, select, select_artifact, select_draft
from alex_models.lock import Lock, LockedFile, LockedModel, Role, version_for
from alex_models.manifest import DEFAULT_REVISION, Manifest, ModelInput
from alex_models.remote import Facts, PresetDraft, RemoteFile, RepoSnapshot

__all__ = ["ResolveError", "Upgrade", "plan", "presets", "resolve", "select", "unhashed", "url_filename"]

Upgrade = bool | frozenset[str]
"""``True`` re-resolves every model; a set of names re-resolves just those."""

DRAFT_SUFFIX = ".draft"
"""``NAME.draft``: the lock entry of the draft model NAME's repo preset points at."""


@dataclass(frozen=True)
class Plan:
    """Which models keep their locked entry and which are resolved from fresh facts."""

    keep: Mapping[str, LockedModel]
    resolve: Mapping[str, ModelInput]

    @property
    def repos(self) -> set[tuple[str, str]]:
        """The (repo, revision) pairs to look up."""
        return {
            (i.repo, i.revision)
            for i in self.resolve.values()
            if i.repo is not None and i.revision is not None
        }

    @property
    def urls(self) -> dict[str, str | None]:
        """The URLs to look up, with the SHA256 the manifest pins for each, if any."""
        return {i.url: i.sha256 for i in self.resolve.values() if i.url is not None}

    @property
    def artifacts(self) -> set[str]:
        """The registry references to read."""
        return {i.oci for i in self.resolve.values() if i.oci is not None}


def plan(manifest: Manifest, previous: Lock | None, upgrade: Upgrade = False) -> Plan:
    """Split the manifest's models into kept lock entries and models to resolve."""
    unknown = sorted(upgrade - manifest.models.keys()) if isinstance(upgrade, frozenset) else []
    if unknown:
        raise ResolveError(
            f"cannot upgrade {', '.join(unknown)}: no such model in the manifest",
            hint=f"models: {', '.join(sorted(manifest.models)) or 'none'}",
        )
    keep: dict[str, LockedModel] = {}
    fresh: dict[str, ModelInput] = {}
    for name, wanted in manifest.inputs().items():
        locked = None if previous is None else previous.models.get(name)
        upgraded = upgrade is True or (isinstance(upgrade, frozenset) and name in upgrade)
        if locked is not None and locked.input == wanted and not upgraded:
            keep[name] = locked
        else:
            fresh[name] = wanted
    for name, locked in (previous.models if previous is not None else {}).items():
        if locked.preset_of in keep and name not in manifest.models:
            keep[name] = locked  # a preset's draft stays with its model
    return Plan(keep=keep, resolve=fresh)


def presets(
    plan: Plan, snapshots: Mapping[tuple[str, str], RepoSnapshot]
) -> list[tuple[str, RepoSnapshot, RemoteFile]]:
    """(model, snapshot, its ``preset.ini``) of each model to resolve that takes its repo's preset:
    ``lock`` reads those, for the draft they point at and to refuse what emit could not use."""
    found = []
    for name, wanted in sorted(plan.resolve.items()):
        if wanted.repo is not None and wanted.revision is not None:
            snapshot = snapshots[(wanted.repo, wanted.revision)]
            found += [(name, snapshot, f) for f, role in select(name, wanted, snapshot) if role == "preset"]
    return found


def unhashed(
    plan: Plan,
    snapshots: Mapping[tuple[str, str], RepoSnapshot],
    drafts: Mapping[str, PresetDraft] | None = None,
) -> set[tuple[str, str, str, int]]:
    """(repo, commit, path, size) of each picked plain git file: the Hub reports no SHA256 for those."""
    picked: list[tuple[RepoSnapshot, RemoteFile]] = []
    for name, wanted in plan.resolve.items():
        if wanted.repo is None or wanted.revision is None:
            continue
        snapshot = snapshots[(wanted.repo, wanted.revision)]
        picked += [(snapshot, remote_file) for remote_file, _ in select(name, wanted, snapshot)]
    for draft in (drafts or {}).values():
        snapshot = snapshots[(draft.repo, DEFAULT_REVISION)]
        picked += [(snapshot, remote_file) for remote_file, _ in select_draft(draft, snapshot)]
    return {(s.repo, s.commit, f.path, f.size) for s, f in picked if f.sha256 is None}


def resolve(manifest: Manifest, facts: Facts, previous: Lock | None = None, upgrade: Upgrade = False) -> Lock:
    """The lock for ``manifest``: kept entries from ``previous``, the rest from ``facts``."""
    chosen = plan(manifest, previous, upgrade)
    models = dict(chosen.keep)
    for name, wanted in chosen.resolve.items():
        if wanted.oci is not None:
            models[name] = _locked_oci(name, wanted, facts)
        elif wanted.url is not None:
            models[name] = _locked_url(name, wanted, facts)
        else:
            models[name] = _locked_hf(name, wanted, facts)
        draft = facts.preset_drafts.get(name)
        if draft is not None:
            models[name + DRAFT_SUFFIX] = _locked_draft(manifest, name, draft, facts)
    return Lock(version=version_for(models), models=dict(sorted(models.items())))


def _locked_hf(name: str, wanted: ModelInput, facts: Facts) -> LockedModel:
    if wanted.repo is None or wanted.revision is None:
        raise ValueError(f"model {name!r} has neither a repo nor a url")  # the manifest rules this out
    snapshot = facts.snapshots[(wanted.repo, wanted.revision)]
    files = [_locked_file(snapshot, f, role, facts) for f, role in select(name, wanted, snapshot)]
    return LockedModel(
        input=wanted,
        source="hf",
        repo=wanted.repo,
        revision=wanted.revision,
        commit=snapshot.commit,
        files=files,
    )


def _locked_draft(manifest: Manifest, name: str, draft: PresetDraft, facts: Facts) -> LockedModel:
    entry = name + DRAFT_SUFFIX
    if entry in manifest.models:
        raise ResolveError(
            f"{draft.where}: model {name!r} gets a draft from its repo preset, locked as {entry!r}, "
            "which is the name of another model",
            hint=f"rename the model {entry!r} in models.yaml",
        )
    snapshot = facts.snapshots[(draft.repo, DEFAULT_REVISION)]
    return LockedModel(
        input=ModelInput(repo=draft.repo, revision=DEFAULT_REVISION, file=draft.file, quant=draft.tag),
        preset_of=name,
        source="hf",
        repo=draft.repo,
        revision=DEFAULT_REVISION,
        commit=snapshot.commit,
        files=[_locked_file(snapshot, f, role, facts) for f, role in select_draft(draft, snapshot)],
    )


def _locked_file(snapshot: RepoSnapshot, remote_file: RemoteFile, role: Role, facts: Facts) -> LockedFile:
    return LockedFile(
        path=remote_file.path,
        role=role,
        size=remote_file.size,
        sha256=remote_file.sha256 or facts.hashes[(snapshot.repo, snapshot.commit, remote_file.path)],
    )


def _locked_url(name: str, wanted: ModelInput, facts: Facts) -> LockedModel:
    if wanted.url is None:
        raise ValueError(f"model {name!r} has no url")
    found = facts.urls[wanted.url]
    path = url_filename(wanted.url)
    return LockedModel(
        input=wanted,
        source="url",
        url=wanted.url,
        files=[LockedFile(path=path, role=role_of(path), size=found.size, sha256=found.sha256)],
    )


def _locked_oci(name: str, wanted: ModelInput, facts: Facts) -> LockedModel:
    """The artifact's model (the one ``quant`` picks, when it holds several) and every other layer."""
    reference = oci_reference(wanted.oci or "")
    if reference is None or wanted.oci is None:
        raise ValueError(f"model {name!r} has no oci reference")  # the manifest rules this out
    found = facts.artifacts[wanted.oci]
    files = [
        LockedFile(path=layer.path, role=layer.kind, size=layer.size, sha256=layer.sha256)
        for layer in select_artifact(name, wanted, found)
    ]
    return LockedModel(
        input=wanted,
        source="oci",
        registry=reference.registry,
        repository=reference.repository,
        tag=reference.tag,
        digest=found.digest,
        files=files,
    )


def url_filename(url: str) -> str:
    """The file name a URL source is stored under: the last segment of its path."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    problem = (
        relpath_problem(name) or ("it is a folder" if "/" in name else None) or portable_name_problem(name)
    )
    if problem is not None:
        raise ResolveError(
            f"cannot name a file after {url!r}: {problem}", hint="use a URL that ends in a file name"
        )
    return name
