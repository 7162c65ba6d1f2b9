"""Use case ``emit``: write (or check) llama.cpp runtime configuration for the locked models."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alex_models._fs import atomic_write
from alex_models.api._context import manifest_relative, require_lock, store_for
from alex_models.emit import ServerSpec, server_specs
from alex_models.emit import llama_cpp as render
from alex_models.emit.flags import ServerFlags
from alex_models.errors import UsageError, UserError
from alex_models.formats import EmitFormat, Shell
from alex_models.lock import Lock
from alex_models.manifest import EmitTarget, Manifest, load_manifest
from alex_models.presetini import PresetError
from alex_models.provider import detect_flags
from alex_models.store import Store


@dataclass(frozen=True)
class Emitted:
    """One emitted configuration: its text, where it went, and what to tell the user."""

    format: str
    path: Path | None
    """None when it went to standard output."""
    text: str
    changed: bool
    """With ``check``: the file on disk differs (or is missing). Otherwise: the file was rewritten."""
    warnings: tuple[str, ...]


def emit(
    format_name: str,
    manifest_path: Path = Path("models.yaml"),
    *,
    out: Path | None = None,
    into: Path | None = None,
    only: Iterable[str] = (),
    base_url: str | None = None,
    as_json: bool = False,
    check: bool = False,
    allow_missing: bool = False,
    store_home: Path | None = None,
    flags: ServerFlags | None = None,
    shell: Shell | None = None,
) -> Emitted:
    """Render ``format_name`` for the selected models; write it to ``out``/``into`` or return it.

    Command lines are written for ``shell`` (default: as ``target_shell`` says).
    ``into`` (``alex`` only) merges into an existing YAML file, keeping its comments and other keys.
    ``check`` writes nothing and reports whether the file on disk differs. A model that is not
    synced is an error (its paths would lead nowhere) unless ``allow_missing`` or ``check``.
    """
    if format_name not in set(EmitFormat):
        raise UsageError(f"unknown format {format_name!r}", hint=f"formats: {', '.join(EmitFormat)}")
    if into is not None and format_name != EmitFormat.ALEX:
        raise UsageError("--into merges into an app config: it goes with the 'alex' format")
    manifest = load_manifest(manifest_path)
    _, lock = require_lock(manifest_path, None)
    store = store_for(manifest_path, store_home)
    names = list(only) or None
    if not (check or allow_missing):
        _require_synced(manifest, lock, store, names or list(manifest.models))
    target = EmitTarget(
        format=EmitFormat(format_name), path=str(into or out or "-"), base_url=base_url, shell=shell
    )
    return _emit_one(
        manifest,
        lock,
        store,
        manifest_path.parent,
        target,
        names,
        destination=into or out,
        check=check,
        as_json=as_json,
        flags=flags or detect_flags(),
    )


def default_shell() -> Shell:
    """The shell a user of this system types commands into: PowerShell on Windows, sh elsewhere."""
    return Shell.POWERSHELL if os.name == "nt" else Shell.SH


_SHELL_BY_SUFFIX = {".sh": Shell.SH, ".ps1": Shell.POWERSHELL, ".cmd": Shell.CMD, ".bat": Shell.CMD}


def target_shell(target: EmitTarget, destination: Path | None) -> Shell:
    """The shell a command line is for: the one named, else the one the file's extension names,
    else this system's (the file points into this system's store: it is run here)."""
    by_suffix = _SHELL_BY_SUFFIX.get(destination.suffix.lower()) if destination is not None else None
    return target.shell or by_suffix or default_shell()


def emit_targets(
    manifest_path: Path = Path("models.yaml"),
    *,
    check: bool = False,
    allow_missing: bool = False,
    store_home: Path | None = None,
    lock: Lock | None = None,
    flags: ServerFlags | None = None,
) -> list[Emitted]:
    """Write (or with ``check``, compare) every file the manifest's ``emit:`` list names.

    As ``emit``, a model that is not synced is an error unless ``allow_missing`` or ``check``.
    Command lines are written for ``target_shell``.
    """
    manifest = load_manifest(manifest_path)
    if not manifest.emit:
        return []
    if lock is None:
        _, lock = require_lock(manifest_path, None)
    store = store_for(manifest_path, store_home)
    selections = [[target.model] if target.model else target.only for target in manifest.emit]
    if not (check or allow_missing):  # every target's models, before any file is written
        _require_synced(manifest, lock, store, [n for names in selections for n in names or manifest.models])
    flags = flags or detect_flags()
    # A repo preset that cannot be used fails before any file is written, not halfway through.
    selected = [n for names in selections for n in names or manifest.models if n in lock.models]
    server_specs(manifest, lock, store.view_path, manifest_path.parent, selected, _read_preset, flags)
    results = []
    for target, names in zip(manifest.emit, selections, strict=True):
        destination = manifest_relative(target.path, manifest_path)
        results.append(
            _emit_one(
                manifest,
                lock,
                store,
                manifest_path.parent,
                target,
                names,
                destination=destination,
                check=check,
                as_json=False,
                flags=flags,
            )
        )
    return results


def _emit_one(
    manifest: Manifest,
    lock: Lock,
    store: Store,
    manifest_dir: Path,
    target: EmitTarget,
    names: list[str] | None,
    *,
    destination: Path | None,
    check: bool,
    as_json: bool,
    flags: ServerFlags,
) -> Emitted:
    specs = server_specs(
        manifest, lock, store.view_path, manifest_dir.absolute(), names, read_preset=_read_preset, flags=flags
    )
    existing = _read(destination) if destination is not None else None
    existing_merged = existing if target.format is EmitFormat.ALEX else None
    shell = target_shell(target, destination)
    text = _render(target, specs, flags, existing=existing_merged, as_json=as_json, shell=shell)
    warnings = tuple(_warnings(specs))
    if destination is None:
        return Emitted(target.format, None, text, changed=False, warnings=warnings)
    changed = existing != text
    if changed and not check:
        atomic_write(destination, text.encode())
    return Emitted(target.format, destination, text, changed=changed, warnings=warnings)


def _require_synced(manifest: Manifest, lock: Lock, store: Store, names: list[str]) -> None:
    """Every model (and draft) the config points at is synced: a path that leads nowhere would
    start a server that fails, or a shell line ('eval "$(alex-models emit …)"') that does.

    A name that is not locked is left to ``server_specs``, which says so.
    """
    drafts = (manifest.models[name].draft for name in names if name in manifest.models)
    for name in dict.fromkeys([*names, *(draft for draft in drafts if draft)]):
        if name not in lock.models:
            continue
        found = store.model_state(lock.models[name])
        if not found.synced:
            raise UserError(
                f"model {name!r} is not synced into {store.home}: its files are not in place",
                hint=f"{found.hint}; or pass --allow-missing to emit the paths anyway",
            )


def _read_preset(path: Path) -> str:
    """A locked preset.ini; one not synced yet (``--allow-missing``, ``--check``) gives no settings."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: cannot read this preset: {exc}") from None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _render(
    target: EmitTarget,
    specs: list[ServerSpec],
    flags: ServerFlags,
    *,
    existing: str | None,
    as_json: bool,
    shell: Shell,
) -> str:
    if not specs:
        raise UserError(
            f"no model to emit for {target.format}", hint="add models to models.yaml and lock them"
        )
    options = render.RenderOptions(
        flags, as_json=as_json, shell=shell, base_url=target.base_url, existing=existing
    )
    return render.RENDERERS[target.format](specs, options)


def _warnings(specs: list[ServerSpec]) -> list[str]:
    """Mistakes the GGUF headers reveal before any runtime starts: a context beyond training."""
    from alex_models.ggufinfo import read_gguf  # noqa: PLC0415 - only when files are there

    found = []
    for spec in specs:
        if not spec.model.exists():
            found.append(f"{spec.name}: {spec.model} is not synced yet; run 'alex-models sync'")
            continue
        info = read_gguf(spec.model, label=spec.name)
        ctx = spec.runtime.ctx_size
        if ctx is not None and info.context_length is not None and ctx > info.context_length:
            found.append(
                f"{spec.name}: ctx_size {ctx} is above the {info.context_length} tokens it was trained with"
            )
        if (
            spec.runtime.chat_template is None
            and spec.chat_template_file is None
            and not info.has_chat_template
        ):
            found.append(
                f"{spec.name}: the GGUF carries no chat template; set runtime.chat_template for chat use"
            )
    return found
