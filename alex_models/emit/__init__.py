"""Emitted runtime configuration: what llama.cpp (and the tools around it) need to serve the lock.

``server_specs`` turns the manifest's runtime settings and the lock's files into one
``ServerSpec`` per model, with absolute view paths into the store; the renderers in
``alex_models.emit.llama_cpp`` turn specs into text. Both are pure: no I/O, same input, same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from alex_models.emit.flags import ServerFlags
from alex_models.emit.repo_preset import repo_preset
from alex_models.errors import UserError
from alex_models.lock import Lock, LockedFile, LockedModel
from alex_models.manifest import Manifest, Runtime

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_BASE_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}/v1"
"""Where the app talks to llama-server when the manifest names no host or port."""
PROVIDER = "llama.cpp"
"""The app config's ``runtime.llm_provider``; these spellings all name it:"""
PROVIDER_ALIASES = frozenset({"llama.cpp", "llamacpp", "llama-cpp", "llama_cpp"})
ViewPath = Callable[[LockedModel, LockedFile], Path]
ReadPreset = Callable[[Path], str]
"""The text of a locked ``preset.ini`` at its view path."""


@dataclass(frozen=True)
class ServerSpec:
    """One model as llama-server should serve it."""

    name: str
    model: Path
    """The main file (the first shard of a split model)."""
    mmproj: Path | None
    draft: Path | None
    runtime: Runtime
    """The model's runtime settings on top of the manifest's defaults."""
    chat_template_file: Path | None
    lora: tuple[Path, ...] = ()
    """LoRA adapters, in path order."""
    spec_type: str | None = None
    """llama-server's ``--spec-type`` for a draft head (``draft-mtp``, …); None for a draft model."""
    preset: tuple[tuple[str, str], ...] = ()
    """The repo's ``preset.ini`` settings for this model, keys as written: below every other setting."""

    @property
    def host(self) -> str:
        return self.runtime.host or DEFAULT_HOST

    @property
    def port(self) -> int:
        return self.runtime.port or DEFAULT_PORT

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"


def server_specs(
    manifest: Manifest,
    lock: Lock,
    view_path: ViewPath,
    manifest_dir: Path,
    names: Iterable[str] | None = None,
    read_preset: ReadPreset | None = None,
    flags: ServerFlags | None = None,
) -> list[ServerSpec]:
    """Specs for ``names`` (default: every model), in manifest order.

    With ``read_preset``, a model whose repo ships a ``preset.ini`` gets its settings (read as
    ``flags`` spell llama-server's options); without, presets are left out.
    """
    wanted = list(manifest.models) if names is None else list(names)
    for name in wanted:
        if name not in manifest.models or name not in lock.models:
            raise UserError(
                f"no locked model named {name!r}",
                hint=f"models: {', '.join(manifest.models) or 'none'} (lock after adding one)",
            )
    order = [name for name in manifest.models if name in wanted]
    specs = [_spec(manifest, lock, view_path, manifest_dir, name) for name in order]
    if read_preset is None:
        return specs
    return [_with_preset(spec, lock, view_path, read_preset, flags) for spec in specs]


def _with_preset(
    spec: ServerSpec, lock: Lock, view_path: ViewPath, read_preset: ReadPreset, flags: ServerFlags | None
) -> ServerSpec:
    entry = lock.models[spec.name]
    preset = next((f for f in entry.files if f.role == "preset"), None)
    if preset is None or entry.repo is None:
        return spec
    path = view_path(entry, preset)
    found = repo_preset(read_preset(path), str(path), entry.repo, entry.input.quant, flags or ServerFlags())
    if found.draft is not None and _preset_draft(lock, spec.name) is None:
        raise UserError(
            f"{found.draft.where}: the preset names draft {found.draft.repo}, and the lock holds none "
            f"for model {spec.name!r}",
            hint=f"run 'alex-models lock --upgrade-model {spec.name}'",
        )
    return replace(spec, preset=found.settings)


def _preset_draft(lock: Lock, name: str) -> tuple[str, LockedModel] | None:
    """The lock entry of the draft ``name``'s repo preset points at, with its name."""
    return next(((n, e) for n, e in lock.models.items() if e.preset_of == name), None)


def _spec(manifest: Manifest, lock: Lock, view_path: ViewPath, manifest_dir: Path, name: str) -> ServerSpec:
    entry = lock.models[name]
    spec = manifest.models[name]
    runtime = (spec.runtime or Runtime()).over(manifest.defaults.runtime)
    main = _main_view(entry, view_path, name)
    mmproj = next((view_path(entry, f) for f in entry.files if f.role == "mmproj"), None)
    lora = tuple(view_path(entry, f) for f in entry.files if f.role == "lora")
    draft, spec_type = None, None
    if spec.sidecar is not None:
        head = next((f for f in entry.files if f.role == spec.sidecar), None)
        if head is None:
            raise UserError(
                f"model {name!r}: the lock holds no {spec.sidecar} draft head", hint="run 'alex-models lock'"
            )
        draft, spec_type = view_path(entry, head), f"draft-{spec.sidecar}"
    if spec.draft is not None:
        if spec.draft not in lock.models:
            raise UserError(
                f"model {name!r} names draft {spec.draft!r}, which is not locked",
                hint="run 'alex-models lock'",
            )
        draft = _main_view(lock.models[spec.draft], view_path, spec.draft)
    from_preset = _preset_draft(lock, name)
    if draft is None and from_preset is not None:  # the manifest's own draft wins over the preset's
        draft = _main_view(from_preset[1], view_path, from_preset[0])
    template = None
    if runtime.chat_template_file is not None:
        template = Path(runtime.chat_template_file).expanduser()
        template = template if template.is_absolute() else (manifest_dir / template)
    return ServerSpec(
        name=name,
        model=main,
        mmproj=mmproj,
        draft=draft,
        lora=lora,
        runtime=runtime,
        chat_template_file=template,
        spec_type=spec_type,
    )


def _main_view(entry: LockedModel, view_path: ViewPath, name: str) -> Path:
    main = entry.main_file
    if main is None:
        raise UserError(
            f"model {name!r} locks no GGUF model to serve, only {', '.join(f.path for f in entry.files)}",
            hint="point it at a .gguf with 'quant:' or 'file:'",
        )
    return view_path(entry, main)


def is_llama_cpp(provider: object) -> bool:
    """Whether ``provider`` names the llama.cpp provider, under any of its spellings."""
    return isinstance(provider, str) and provider.strip().lower() in PROVIDER_ALIASES


def single(specs: list[ServerSpec], format_name: str) -> ServerSpec:
    """The one spec a per-model format needs."""
    if len(specs) != 1:
        names = ", ".join(spec.name for spec in specs) or "none"
        raise UserError(
            f"{format_name} describes one model, and {len(specs)} are selected ({names})",
            hint="pick one with --only NAME (or 'model:' in the manifest's emit entry)",
        )
    return specs[0]
