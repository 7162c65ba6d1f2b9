"""Which files of a repo listing a lock entry takes: quant labels, paths and globs, shards, the
projector and draft head picked as ``llama-server -hf`` picks them, the repo preset, and the draft
model a preset points at. Pure: listings in, paths out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Literal

from alex_models._fs import portable_name_problem, relpath_problem
from alex_models._ids import SPLIT_RE
from alex_models.errors import UserError
from alex_models.lock import Role
from alex_models.manifest import ModelInput
from alex_models.remote import ArtifactLayer, ArtifactSnapshot, PresetDraft, RemoteFile, RepoSnapshot
from alex_models.sidecars import DRAFT_HEADS, DraftHead, best, best_model, is_model_name, keyword

_LISTED_AT_MOST = 12
AUTO = "auto"
"""``mmproj: auto``: the projector ``llama-server -hf`` would pick."""
PRESET = "preset.ini"
"""The llama.cpp preset a repo ships, at its root, as ``llama-server -hf`` looks for it."""


class ResolveError(UserError):
    """The manifest asks for something the remote does not have (or has several of)."""


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


def select_artifact(name: str, wanted: ModelInput, found: ArtifactSnapshot) -> list[ArtifactLayer]:
    """The layers of a registry artifact that model ``name`` locks: its model (the one ``quant``
    picks, when it holds several) and every other layer, in the artifact's order."""
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
    return [layers[p] for p in picked]


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
        return {path: role_of(path) for path in _with_shards(where, wanted.file, files)}
    picked: dict[str, Role] = {}
    for pattern in wanted.files or []:
        matched = [p for p in files if fnmatchcase(p, pattern)]
        if not matched:
            raise ResolveError(f"{where} has no file matching {pattern!r}", hint=_available(files))
        picked.update((path, role_of(path)) for path in matched)
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


def role_of(path: str) -> Role:
    """A file's role when nothing else says: a projector, a model, or any other file."""
    name = path.rsplit("/", 1)[-1].lower()
    if not name.endswith(".gguf"):
        return "file"
    return "mmproj" if "mmproj" in name else "model"


def _by_quant(where: str, quant: str, files: Mapping[str, RemoteFile]) -> list[str]:
    label = _label(quant)
    # Nor a projector, imatrix or draft head: llama.cpp's gguf_filename_is_model.
    ggufs = [p for p in files if role_of(p) == "model" and is_model_name(p)]
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


def select_draft(draft: PresetDraft, snapshot: RepoSnapshot) -> list[tuple[RemoteFile, Role]]:
    """The files of the draft a repo preset points at, picked as ``llama-server --hf-repo-draft``
    picks them: ``model-draft`` when the preset names it, else the tag's (or, without one, Q4_K_M's,
    then Q8_0's, then the only) model. llama.cpp takes the first of several in the Hub's listing
    order; the lock refuses them instead, as it refuses a draft repo that would give llama.cpp
    something other than a model (its own preset, or a draft head)."""
    files = {f.path: f for f in snapshot.files}
    where = f"{draft.where}: draft {draft.repo} at {snapshot.revision} ({snapshot.commit[:12]})"
    hint = "name the draft in models.yaml instead ('draft:' an entry of its own), with 'preset: false'"
    if PRESET in files:
        raise ResolveError(
            f"{where} ships a preset.ini, which llama.cpp reads instead of a draft model", hint=hint
        )
    if draft.file is not None:
        if draft.file not in files:
            raise ResolveError(f"{where} has no file {draft.file!r}", hint=_available(files))
        primary = draft.file
    else:
        primary = _llama_cpp_pick(where, draft.tag, files, hint)
        # Without model-draft, llama.cpp serves a draft head of the repo rather than its model.
        heads = [p for kind in DRAFT_HEADS for p in best(files, primary, keyword(kind), draft.tag)]
        if heads:
            raise ResolveError(
                f"{where} ships draft heads ({', '.join(heads[:_LISTED_AT_MOST])}), which llama.cpp would "
                "load instead of the model; alex-models does not follow that",
                hint=hint,
            )
    return [(files[path], role_of(path)) for path in _with_shards(where, primary, files)]


def _llama_cpp_pick(where: str, tag: str | None, files: Mapping[str, RemoteFile], hint: str) -> str:
    found = best_model(files, tag)
    if not found:
        ggufs = {p: f for p, f in files.items() if p.endswith(".gguf")}
        raise ResolveError(
            f"{where} has no GGUF model{' with tag ' + tag if tag else ''}",
            hint=_available(ggufs) if ggufs else "the repo has no .gguf files",
        )
    if len(found) > 1:
        raise ResolveError(
            f"{where}: {len(found)} models fit{' tag ' + tag if tag else ''}: "
            f"{', '.join(found[:_LISTED_AT_MOST])}",
            hint=f"llama.cpp would take the first the Hub lists; {hint}",
        )
    return found[0]
