"""The resolver: manifest + remote facts + previous lock -> lock. Pure; no I/O.

Resolution goes in three steps, each a pure function, so the caller can fetch exactly the facts
the next step needs:

1. ``plan`` decides which models keep their locked entry (input unchanged, not upgraded) and
   which are resolved again, and so which repos and URLs must be asked about.
2. ``select`` picks each model's files from its repo's listing (quant labels, globs, shards,
   mmproj); ``unhashed`` lists the picked plain git files whose SHA256 the Hub does not report.
3. ``resolve`` builds the lock from kept entries and fresh facts.

Lock semantics follow uv's: an existing lock is respected (a moved branch does not change it),
removed models are dropped, and only ``upgrade`` re-resolves models whose input did not change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal
from urllib.parse import unquote, urlsplit

from alex_models._fs import portable_name_problem, relpath_problem
from alex_models._ids import SPLIT_RE, oci_reference
from alex_models.errors import UserError
from alex_models.lock import Lock, LockedFile, LockedModel, Role, version_for
from alex_models.manifest import Manifest, ModelInput
from alex_models.remote import Facts, RemoteFile, RepoSnapshot
from alex_models.sidecars import DRAFT_HEADS, DraftHead, best, is_model_name, keyword

Upgrade = bool | frozenset[str]
"""``True`` re-resolves every model; a set of names re-resolves just those."""

_LISTED_AT_MOST = 12
AUTO = "auto"
"""``mmproj: auto``: the projector ``llama-server -hf`` would pick."""
PRESET = "preset.ini"
"""The llama.cpp preset a repo ships, at its root, as ``llama-server -hf`` looks for it."""


class ResolveError(UserError):
    """The manifest asks for something the remote does not have (or has several of)."""


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
    return Plan(keep=keep, resolve=fresh)


def select(name: str, wanted: ModelInput, snapshot: RepoSnapshot) -> list[tuple[RemoteFile, Role]]:
    """The files of ``snapshot`` that model ``name`` asks for, each with its role, sorted by path."""
    files = {f.path: f for f in snapshot.files}
    where = f"model {name!r}: {snapshot.repo} at {snapshot.revision} ({snapshot.commit[:12]})"
    picked = _main_files(where, wanted, files)
    picked.update(_sidecars(where, wanted, picked, files))
    if PRESET in files and wanted.preset is not False:
        picked[PRESET] = "preset"
    for pattern in wanted.lora or []:
        adapters = [p for p in files if p == pattern or fnmatchcase(p, pattern)]
        if not adapters:
            raise ResolveError(f"{where} has no LoRA adapter matching {pattern!r}", hint=_available(files))
        picked.update(dict.fromkeys(adapters, "lora"))
    _check_paths(where, picked, "narrow 'files:' or name one file with 'file:'")
    return [(files[path], picked[path]) for path in sorted(picked)]


def _check_paths(where: str, paths: Iterable[str], narrow: str) -> None:
    """The picked paths can be views on any filesystem; the lock refuses the others too, so say so
    here, as a resolve error."""
    folded: dict[str, str] = {}
    for path in sorted(paths):
        problem = relpath_problem(path) or portable_name_problem(path)
        if problem is not None:
            raise ResolveError(f"{where}: refusing file name {path!r}: {problem}")
        first = folded.setdefault(path.casefold(), path)
        if first != path:
            raise ResolveError(
                f"{where}: {first!r} and {path!r} differ only in case, which some filesystems cannot hold",
                hint=narrow,
            )


def _main_files(where: str, wanted: ModelInput, files: Mapping[str, RemoteFile]) -> dict[str, Role]:
    if wanted.quant is not None:
        return dict.fromkeys(_by_quant(where, wanted.quant, files), "model")
    if wanted.file is not None:
        if wanted.file not in files:
            raise ResolveError(f"{where} has no file {wanted.file!r}", hint=_available(files))
        return {path: _role(path) for path in _with_shards(where, wanted.file, files)}
    picked: dict[str, Role] = {}
    for pattern in wanted.files or []:
        matched = [p for p in files if fnmatchcase(p, pattern)]
        if not matched:
            raise ResolveError(f"{where} has no file matching {pattern!r}", hint=_available(files))
        picked.update((path, _role(path)) for path in matched)
    return picked


def _mmproj(where: str, pattern: str, files: Mapping[str, RemoteFile]) -> str:
    matched = sorted(p for p in files if p == pattern or fnmatchcase(p, pattern))
    if len(matched) != 1:
        found = "no file" if not matched else f"{len(matched)} files ({', '.join(matched[:_LISTED_AT_MOST])})"
        projectors = {p: f for p, f in files.items() if "mmproj" in p.lower()}
        raise ResolveError(
            f"{where}: mmproj {pattern!r} matches {found}; it must match exactly one",
            hint=_available(projectors or files),
        )
    return matched[0]


def _sidecars(
    where: str, wanted: ModelInput, picked: Mapping[str, Role], files: Mapping[str, RemoteFile]
) -> dict[str, Role]:
    """The projector and draft head the entry asks for, named or picked as llama.cpp picks them."""
    found: dict[str, Role] = {}
    if wanted.mmproj == AUTO:
        found[_auto_sidecar(where, "mmproj", wanted, picked, files)] = "mmproj"
    elif wanted.mmproj is not None:
        found[_mmproj(where, wanted.mmproj, files)] = "mmproj"
    if wanted.sidecar is not None:
        kind = _draft_head(wanted.sidecar)
        if wanted.sidecar_file is None:
            found[_auto_sidecar(where, kind, wanted, picked, files)] = kind
        elif wanted.sidecar_file in files:
            found[wanted.sidecar_file] = kind
        else:
            raise ResolveError(f"{where} has no file {wanted.sidecar_file!r}", hint=_available(files))
    return found


def _auto_sidecar(
    where: str,
    kind: Literal["mmproj"] | DraftHead,
    wanted: ModelInput,
    picked: Mapping[str, Role],
    files: Mapping[str, RemoteFile],
) -> str:
    """The sidecar llama.cpp's ``find_best_sibling`` picks for the model's first file; a tie is an error."""
    models = sorted(path for path, role in picked.items() if role == "model")
    manifest_key, file_key = ("mmproj", "mmproj") if kind == "mmproj" else ("sidecar", "sidecar_file")
    if not models:
        raise ResolveError(f"{where}: a {kind} is picked beside the model, and this entry selects no model")
    # llama.cpp's tag is the -hf ":QUANT"; it weighs it for draft heads only, never for the projector.
    tag = wanted.quant if kind != "mmproj" else None
    found = best(files, models[0], keyword(kind), tag)
    if not found:
        what = "projector (a .gguf with 'mmproj' in its path)" if kind == "mmproj" else f"'{kind}-*.gguf'"
        raise ResolveError(
            f"{where} has no {what} beside {models[0]}",
            hint=f"remove '{manifest_key}' from the entry, or name a file with '{file_key}:'",
        )
    if len(found) > 1:
        raise ResolveError(
            f"{where}: {len(found)} {kind} files fit {models[0]} equally well: "
            f"{', '.join(found[:_LISTED_AT_MOST])}",
            hint=f"name one with '{file_key}: <path>' (llama.cpp would take the first the Hub lists)",
        )
    return found[0]


def _draft_head(value: str) -> DraftHead:
    for kind in DRAFT_HEADS:
        if kind == value:
            return kind
    raise ValueError(f"not a draft head: {value!r}")  # the manifest allows only these


def _role(path: str) -> Role:
    name = path.rsplit("/", 1)[-1].lower()
    if not name.endswith(".gguf"):
        return "file"
    return "mmproj" if "mmproj" in name else "model"


def _by_quant(where: str, quant: str, files: Mapping[str, RemoteFile]) -> list[str]:
    label = _label(quant)
    # Nor a projector, imatrix or draft head: llama.cpp's gguf_filename_is_model.
    ggufs = [p for p in files if _role(p) == "model" and is_model_name(p)]
    matched = [p for p in ggufs if label.search(p[: -len(".gguf")])]
    if not matched:
        raise ResolveError(
            f"{where} has no GGUF with quant label {quant}",
            hint=_available({p: files[p] for p in ggufs}) if ggufs else "the repo has no .gguf files",
        )
    groups: dict[str, list[str]] = {}
    for path in matched:
        groups.setdefault(_model_key(path), []).append(path)
    if len(groups) > 1:
        firsts = ", ".join(sorted(min(paths) for paths in groups.values())[:_LISTED_AT_MOST])
        raise ResolveError(
            f"{where}: quant {quant} matches {len(groups)} different models: {firsts}",
            hint="name one with 'file:' instead of 'quant:'",
        )
    return _with_shards(where, min(matched), files)


def _label(quant: str) -> re.Pattern[str]:
    # The label must stand alone: Q4_K_M matches "x-Q4_K_M.gguf", "Q4_K_M/x-00001-of-00002.gguf",
    # never "x-Q4_K_M_L.gguf" nor "x-IQ4_K_M.gguf".
    return re.compile(rf"(?:^|[-._/ ]){re.escape(quant)}(?=[-./ ]|$)", re.IGNORECASE)


def _model_key(path: str) -> str:
    """Shards of one split model share a key; any other file is its own."""
    split = SPLIT_RE.fullmatch(path)
    return path if split is None else f"{split['stem']}\0{split['count']}"


def _with_shards(where: str, path: str, files: Mapping[str, RemoteFile]) -> list[str]:
    """``path`` alone, or every shard of the split model it belongs to (all must exist)."""
    split = SPLIT_RE.fullmatch(path)
    if split is None:
        return [path]
    count = int(split["count"])
    # llama.cpp opens the siblings of the first shard by these exact names, so only they count.
    shards = [f"{split['stem']}-{no:05d}-of-{split['count']}.gguf" for no in range(1, count + 1)]
    present = [shard if shard in files else None for shard in shards]
    missing = [str(no) for no, found in enumerate(present, start=1) if found is None]
    if count == 0 or missing:
        raise ResolveError(
            f"{where}: split model {split['stem']} is incomplete: shard(s) {', '.join(missing) or '0'} "
            f"of {count} missing",
            hint="pick another revision or quant; llama.cpp needs every shard",
        )
    return [p for p in present if p is not None]


def _available(files: Mapping[str, RemoteFile]) -> str:
    names = sorted(files)
    shown = ", ".join(names[:_LISTED_AT_MOST])
    more = f" and {len(names) - _LISTED_AT_MOST} more" if len(names) > _LISTED_AT_MOST else ""
    return f"it has: {shown}{more}" if names else "it has no files"


def unhashed(plan: Plan, snapshots: Mapping[tuple[str, str], RepoSnapshot]) -> set[tuple[str, str, str, int]]:
    """(repo, commit, path, size) of each picked plain git file: the Hub reports no SHA256 for those."""
    needed = set()
    for name, wanted in plan.resolve.items():
        if wanted.repo is None or wanted.revision is None:
            continue
        snapshot = snapshots[(wanted.repo, wanted.revision)]
        for remote_file, _ in select(name, wanted, snapshot):
            if remote_file.sha256 is None:
                needed.add((snapshot.repo, snapshot.commit, remote_file.path, remote_file.size))
    return needed


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
    return Lock(version=version_for(models), models=dict(sorted(models.items())))


def _locked_hf(name: str, wanted: ModelInput, facts: Facts) -> LockedModel:
    if wanted.repo is None or wanted.revision is None:
        raise ValueError(f"model {name!r} has neither a repo nor a url")  # the manifest rules this out
    snapshot = facts.snapshots[(wanted.repo, wanted.revision)]
    files = [
        LockedFile(
            path=remote_file.path,
            role=role,
            size=remote_file.size,
            sha256=remote_file.sha256 or facts.hashes[(snapshot.repo, snapshot.commit, remote_file.path)],
        )
        for remote_file, role in select(name, wanted, snapshot)
    ]
    return LockedModel(
        input=wanted,
        source="hf",
        repo=wanted.repo,
        revision=wanted.revision,
        commit=snapshot.commit,
        files=files,
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
        files=[LockedFile(path=path, role=_role(path), size=found.size, sha256=found.sha256)],
    )


def _locked_oci(name: str, wanted: ModelInput, facts: Facts) -> LockedModel:
    """The artifact's model (the one ``quant`` picks, when it holds several) and every other layer."""
    reference = oci_reference(wanted.oci or "")
    if reference is None or wanted.oci is None:
        raise ValueError(f"model {name!r} has no oci reference")  # the manifest rules this out
    found = facts.artifacts[wanted.oci]
    where = f"model {name!r}: {found.reference} ({found.digest[:19]})"
    layers = {layer.path: layer for layer in found.layers}
    if len(layers) != len(found.layers):
        raise ResolveError(f"{where}: two layers have the same file path", hint="fix the artifact")
    listed = {p: RemoteFile(p, layer.size, layer.sha256) for p, layer in layers.items()}
    models = {p: f for p, f in listed.items() if layers[p].kind == "model"}
    if not models:
        raise ResolveError(
            f"{where} holds no GGUF model layer", hint=_available(listed) + "; llama.cpp serves GGUF files"
        )
    variants = sorted({_model_key(p) for p in models})
    if len(variants) > 1 and wanted.quant is None:
        firsts = ", ".join(sorted(min(p for p in models if _model_key(p) == v) for v in variants))
        raise ResolveError(f"{where} holds {len(variants)} models: {firsts}", hint="pick one with 'quant:'")
    if len(variants) > 1 and wanted.quant is not None:
        chosen = _by_quant(where, wanted.quant, models)
    else:
        chosen = _with_shards(where, min(models), models)
        declared = (found.quantization or "").upper()
        if wanted.quant not in (None, declared) and not _label(wanted.quant or "").search(chosen[0]):
            said = f"quantized {declared}" if declared else "with no quantization said"
            raise ResolveError(
                f"{where} holds one model, {said}, not {wanted.quant}",
                hint="remove 'quant:', or name the artifact of that quant (often its own tag)",
            )
    picked = [*chosen, *(p for p in layers if layers[p].kind != "model")]
    _check_paths(where, picked, "the artifact's file paths cannot all be views here")
    files = [
        LockedFile(path=p, role=layers[p].kind, size=layers[p].size, sha256=layers[p].sha256) for p in picked
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
