"""The settings a repo's ``preset.ini`` gives the model locked from it, below the manifest's own.

llama.cpp runs a repo that ships ``preset.ini`` as a router over that file's sections. Here the
model's files come from the lock, so a model takes the file's ``[*]`` settings and those of the
sections that are about it: named ``[org/repo]`` or ``[org/repo:QUANT]``, or whose ``hf-repo`` is
that repo (at that quant, or at none). A key naming model files (``model``, ``mmproj``, ``lora``,
…) is refused, as is a section about another model: the lock cannot vouch for those files. The
draft repo (``hf-repo-draft``, with ``model-draft`` as its file) is the exception: ``lock`` locks
that repo's model beside this one, and emit points llama-server at it in the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from alex_models._ids import is_repo_id
from alex_models.emit.flags import ServerFlags
from alex_models.presetini import GLOBAL, PresetError, Setting, is_truthy, parse
from alex_models.remote import PresetDraft

_HF_REPO = "--hf-repo"
# llama.cpp's draft repo (``--spec-draft-hf``, ``-hfd``, ``--hf-repo-draft``) and the draft's file
# in it (``--spec-draft-model``, ``-md``, ``--model-draft``: "used if --spec-draft-hf is set").
_DRAFT_REPO = frozenset({"--hf-repo-draft", "--spec-draft-hf"})
_DRAFT_FILE = frozenset({"--model-draft", "--spec-draft-model"})
_NAMES_FILES = frozenset(
    {
        "--model",
        "--model-url",
        "--docker-repo",
        "--hf-file",
        "--mmproj",
        "--mmproj-url",
        "--lora",
        "--lora-scaled",
    }
)


@dataclass(frozen=True)
class RepoPreset:
    """What a repo's ``preset.ini`` gives the model locked from it."""

    settings: tuple[tuple[str, str], ...]
    """(key, value) pairs, keys as the file spells them; no key naming a file."""
    draft: PresetDraft | None
    """The draft repo it points at: the lock holds it as that repo's model."""


def repo_preset(text: str, filename: str, repo: str, quant: str | None, flags: ServerFlags) -> RepoPreset:
    """The settings of ``text`` for the model from ``repo`` at ``quant`` (``[*]``, then its own
    sections in file order, later keys winning), and the draft repo they point at."""
    sections = parse(text, filename)
    mine = {repo, f"{repo}:{quant}"} if quant else {repo}
    merged: dict[str, Setting] = {}
    for name, settings in sections.items():
        points_at = next(
            (s for s in settings.values() if flags.canonical(s.key)[0] in (_HF_REPO, "--model")), None
        )
        about_me = name in mine or (
            points_at is not None
            and flags.canonical(points_at.key)[0] == _HF_REPO
            and _same_model(points_at.value, repo, quant)
        )
        if name == GLOBAL or about_me:
            for setting in settings.values():
                option = _check(setting, name, filename, flags)
                if option is not None:
                    merged[option] = setting
        elif points_at is not None:
            raise PresetError(
                f"{filename}:{points_at.line}: [{name}] {points_at.key} = {points_at.value} points at a "
                f"model other than {repo}{':' + quant if quant else ''}, which this entry does not lock",
                hint=f"add that model to models.yaml as its own entry; alex-models locks {repo}'s preset "
                "for the model taken from it",
            )
    draft = _draft(merged, filename)
    return RepoPreset(tuple((s.key, s.value) for s in merged.values()), draft)


def _draft(merged: dict[str, Setting], filename: str) -> PresetDraft | None:
    """The draft repo (and file) keys, taken out of ``merged``: the lock supplies that model."""
    repos = [merged.pop(option) for option in sorted(_DRAFT_REPO & merged.keys())]
    files = [merged.pop(option) for option in sorted(_DRAFT_FILE & merged.keys())]
    if not repos:
        if files:  # a path on the publisher's machine
            raise _names_files(files[0], filename)
        return None
    setting = max(repos, key=lambda s: s.line)
    where = f"{filename}:{setting.line}"
    named, tag = _repo_and_tag(setting.value)
    if not is_repo_id(named):
        raise PresetError(
            f"{where}: {setting.key} = {setting.value} is not a Hugging Face repo",
            hint="llama.cpp reads it as <user>/<model>[:quant]",
        )
    file = max(files, key=lambda s: s.line).value if files else None
    return PresetDraft(repo=named, tag=tag.upper() if tag else None, file=file, where=where)


def _repo_and_tag(value: str) -> tuple[str, str | None]:
    """llama.cpp's ``common_download_split_repo_tag``: the repo before the first ``:``, the tag
    after the last."""
    parts = value.split(":")
    return parts[0], (parts[-1] if len(parts) > 1 else None)


def _check(setting: Setting, section: str, filename: str, flags: ServerFlags) -> str | None:
    """The setting's long option; None for the ``hf-repo`` that names this very repo."""
    option, _ = flags.canonical(setting.key)
    if option == _HF_REPO and section != GLOBAL:
        return None  # about this repo: the lock supplies its files
    if option in _NAMES_FILES or option == _HF_REPO:
        raise _names_files(setting, filename, section)
    return option


def _names_files(setting: Setting, filename: str, section: str | None = None) -> PresetError:
    where = f"[{section}] " if section else ""
    return PresetError(
        f"{filename}:{setting.line}: {where}{setting.key} names model files, and the model's files come "
        "from the lock",
        hint="the lock supplies the model, projector and draft; remove the key from the preset "
        "or set the file with models.yaml ('mmproj:', 'draft:', 'sidecar:', 'lora:')",
    )


def _same_model(value: str, repo: str, quant: str | None) -> bool:
    named, _, tag = value.partition(":")
    return named == repo and (not tag or quant is None or tag.upper() == quant)


def as_arguments(
    settings: tuple[tuple[str, str], ...], flags: ServerFlags, overridden: set[str]
) -> list[list[str]]:
    """``settings`` as llama-server arguments, an option (and its value) a group, leaving out the
    ``overridden`` long options; a switch is given or negated as llama.cpp's
    ``common_preset::to_args`` does."""
    groups: list[list[str]] = []
    for key, value in settings:
        option, negated = flags.canonical(key)
        if option in overridden:
            continue
        if option not in flags.switches:
            groups.append([option, value])
        elif is_truthy(value) != negated:
            groups.append([option])
        else:
            # llama.cpp writes the last negative spelling, and drops a switch that has none.
            negations = [f"--{name}" for name, main in flags.negations.items() if main == option]
            groups += [[negations[-1]]] if negations else []
    return groups
