"""``models.yaml``: what the user wants, as strict pydantic models.

``parse_manifest(text, filename)`` is pure; ``load_manifest(path)`` reads the file. Every problem
is a ``ManifestError`` whose message names the file, the line and the column, says what is wrong
and, for a misspelt key, the key that was probably meant::

    models.yaml:5:5: unknown key 'qaunt' in models.qwen (did you mean 'quant'?)

Names that later become paths on disk (``file``, ``files``, ``mmproj``) are refused here when
they could escape a directory, long before anything is downloaded.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from alex_models._doccache import read
from alex_models._yaml import load_document, plain_document, position, validate_document
from alex_models.errors import UserError
from alex_models.formats import EmitFormat, Shell
from alex_models.manifest_fields import (
    ModelName,
    OciRef,
    Quant,
    RelPath,
    RemoteUrl,
    RepoId,
    Revision,
    Sha256,
    StrictModel,
    Url,
    check_version,
)
from alex_models.sidecars import DraftHead

DEFAULT_REVISION = "main"


class ManifestError(UserError):
    """``models.yaml`` cannot be used as it is; the message names file, line and column."""


class Runtime(StrictModel):
    """How llama.cpp should run a model. Does not change which bytes are locked.

    In ``defaults.runtime`` these are shared by every model; a model's own ``runtime`` overrides
    them key by key (``args`` and ``aliases`` are appended, ``env`` is merged).
    """

    host: Annotated[str, Field(min_length=1)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    ctx_size: Annotated[int, Field(gt=0)] | None = None
    n_gpu_layers: Annotated[int, Field(ge=0)] | None = None
    chat_template: Annotated[str, Field(min_length=1)] | None = None
    """A template name llama.cpp knows (``chatml``, ``llama3``, …)."""
    chat_template_file: Annotated[str, Field(min_length=1)] | None = None
    """A Jinja template file; a relative path is relative to the manifest's folder."""
    args: list[str] = Field(default_factory=list)
    """Extra llama-server arguments, passed as they are."""
    aliases: list[str] = Field(default_factory=list)
    """More names the model answers to (llama-swap)."""
    ttl: Annotated[int, Field(ge=0)] | None = None
    """Seconds of idleness before llama-swap unloads the model."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment of the llama-server process (llama-swap)."""
    load_on_startup: bool | None = None
    """Router mode: load the model when the router starts, not at its first request (router-preset)."""

    def over(self, base: Runtime | None) -> Runtime:
        """These settings on top of ``base`` (the defaults)."""
        if base is None:
            return self
        merged = {**base.model_dump(exclude_none=True), **self.model_dump(exclude_none=True)}
        merged["args"] = [*base.args, *self.args]
        merged["aliases"] = [*base.aliases, *self.aliases]
        merged["env"] = {**base.env, **self.env}
        return Runtime(**merged)


_NOT_WITH_OCI = (
    "repo", "revision", "file", "files", "url", "sha256",
    "mmproj", "lora", "sidecar", "sidecar_file", "preset",
)  # fmt: skip
"""What an ``oci`` entry cannot say: the artifact decides its files (its projector included)."""


class ModelSpec(StrictModel):
    """One entry of ``models:``: where its files come from and how to run it."""

    repo: RepoId | None = None
    revision: Revision | None = None
    file: RelPath | None = None
    files: list[RelPath] | None = None
    quant: Quant | None = None
    url: Url | None = None
    sha256: Sha256 | None = None
    oci: OciRef | None = None
    """A model artifact in an OCI registry (ModelPack or Docker's): ``REGISTRY/REPOSITORY:TAG`` or
    ``…@sha256:<hex>``; ``quant`` then picks among its models when it holds several."""
    mmproj: RelPath | None = None
    """The projector in the same repo: a path or glob, or ``auto`` (as ``llama-server -hf`` picks it)."""
    lora: list[RelPath] | None = None
    """LoRA adapters in the same repo (paths or globs), passed to llama-server with --lora."""
    draft: ModelName | None = None
    sidecar: DraftHead | None = None
    """A draft head in the same repo (``mtp``, ``eagle3``, ``dflash``, ``dspark``), picked as
    ``llama-server -hf --spec-type draft-<kind>`` picks it, and served with that --spec-type."""
    sidecar_file: RelPath | None = None
    """The draft head's path in the repo, when the pick is ambiguous (or to pin it)."""
    preset: bool | None = None
    """``false``: leave the repo's ``preset.ini`` out (its settings apply to every model from it)."""
    runtime: Runtime | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.oci is not None:
            extra = [key for key in _NOT_WITH_OCI if getattr(self, key) is not None]
            if extra:
                raise ValueError(f"an 'oci' model takes no {', '.join(repr(k) for k in extra)}")
            return self
        chosen = [key for key in ("file", "files", "quant", "url") if getattr(self, key) is not None]
        if len(chosen) != 1:
            has = f" (it has {' and '.join(chosen)})" if chosen else ""
            raise ValueError(f"a model needs exactly one of 'file', 'files', 'quant', 'url' or 'oci'{has}")
        if self.url is not None:
            extra = [
                key
                for key in ("repo", "revision", "mmproj", "lora", "sidecar", "sidecar_file", "preset")
                if getattr(self, key) is not None
            ]
            if extra:
                raise ValueError(f"a 'url' model takes no {', '.join(repr(k) for k in extra)}")
        elif self.repo is None:
            raise ValueError("'repo' is missing (or give a 'url')")
        if self.sha256 is not None and self.url is None:
            raise ValueError("'sha256' pins a 'url' source; files from a repo are pinned by the lock")
        for key in ("files", "lora"):
            if getattr(self, key) == []:
                raise ValueError(f"'{key}' needs at least one path or glob")
        if self.sidecar_file is not None and self.sidecar is None:
            raise ValueError(
                "'sidecar_file' names the file of a 'sidecar': say which kind (mtp, eagle3, ...)"
            )
        if self.sidecar is not None and self.draft is not None:
            raise ValueError("a model takes one draft: 'draft' (another model) or 'sidecar', not both")
        return self

    def lock_input(self, defaults: Defaults) -> ModelInput:
        """The part of this entry that decides which bytes are locked, with defaults applied."""
        if self.url is not None:
            return ModelInput(url=self.url, sha256=self.sha256)
        if self.oci is not None:
            return ModelInput(oci=self.oci, quant=self.quant)
        return ModelInput(
            repo=self.repo,
            revision=self.revision or defaults.revision,
            file=self.file,
            files=None if self.files is None else sorted(set(self.files)),
            quant=self.quant,
            mmproj=self.mmproj,
            lora=None if self.lora is None else sorted(set(self.lora)),
            sidecar=self.sidecar,
            sidecar_file=self.sidecar_file,
            preset=False if self.preset is False else None,  # locks from before the key stay current
        )


class ModelInput(StrictModel):
    """The normalized manifest input a lock entry was resolved from.

    Two entries with equal inputs select the same files, so the lock judges staleness by comparing
    these, entry by entry, without a network.
    """

    oci: str | None = None
    """First, so an ``oci`` entry's input reads ``{oci: …, quant: …}``; absent from other entries."""
    repo: str | None = None
    revision: str | None = None
    file: str | None = None
    files: list[str] | None = None
    quant: str | None = None
    mmproj: str | None = None
    lora: list[str] | None = None
    sidecar: str | None = None
    sidecar_file: str | None = None
    preset: bool | None = None
    url: str | None = None
    sha256: str | None = None


class Defaults(StrictModel):
    """``defaults:``: what a model entry that says nothing else gets."""

    revision: Revision = DEFAULT_REVISION
    runtime: Runtime | None = None


class EmitTarget(StrictModel):
    """A file ``sync`` writes: a llama.cpp configuration in ``format``, at ``path``."""

    format: Annotated[EmitFormat, Field(strict=False)]  # the YAML string, as the enum member
    path: Annotated[str, Field(min_length=1)]
    """Where to write it; ``~`` is expanded, a relative path is relative to the manifest's folder."""
    model: ModelName | None = None
    """The model, for formats about one model (llama-server, llama-server-env, alex)."""
    only: list[ModelName] | None = None
    """The models to include in formats about several (default: all)."""
    base_url: Annotated[str, Field(min_length=1)] | None = None
    """For ``alex``: the server the app talks to (default: http://<host>:<port>/v1)."""
    shell: Annotated[Shell, Field(strict=False)] | None = None
    """The shell its command lines are for (llama-server, llama-server-env, llama-swap); default:
    the one the file's extension names (.sh, .ps1, .cmd, .bat), else this system's."""


class RemoteSpec(StrictModel):
    """One entry of ``remotes:``: a copy of the blobs ``push`` fills and ``sync --from NAME`` reads."""

    url: RemoteUrl
    """``s3://bucket/prefix``, ``gs://…``, ``az://…`` or ``file:///absolute/path``; never a secret."""


class Manifest(StrictModel):
    """The whole ``models.yaml``."""

    version: Literal[1]
    defaults: Defaults = Field(default_factory=Defaults)
    models: dict[ModelName, ModelSpec] = Field(default_factory=dict)
    emit: list[EmitTarget] = Field(default_factory=list)
    store: Annotated[str, Field(min_length=1)] | None = None
    """The store this project uses: a path, relative to this file's folder, ``~`` expanded.
    ``ALEX_MODELS_HOME`` in the environment wins over it."""
    remotes: dict[ModelName, RemoteSpec] = Field(default_factory=dict)
    """Named remotes, in order: ``push`` uses the first unless told another."""

    @field_validator("version", mode="before")
    @classmethod
    def _integer_version(cls, value: object) -> object:
        return check_version(value)

    @field_validator("models", "emit", mode="before")
    @classmethod
    def _empty_when_blank(cls, value: object, info: ValidationInfo) -> object:
        # "models:" with every entry commented out is an empty section, not an error.
        if value is None:
            return {} if info.field_name == "models" else []
        return value

    def inputs(self) -> dict[str, ModelInput]:
        """Each model's lock input, by name."""
        return {name: spec.lock_input(self.defaults) for name, spec in self.models.items()}


def load_manifest(path: Path) -> Manifest:
    """Read and validate ``path``; raise ``ManifestError`` (naming file, line, column) if it is wrong.

    The same bytes read before are not parsed again (``_doccache``), only validated."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise manifest_not_found(path) from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read it: {exc}") from None
    try:
        return read(
            data,
            lambda plain: _checked(Manifest.model_validate(plain), plain, str(path)),
            lambda text: _parsed(text, str(path)),
            stale=(ValidationError, ManifestError),
        )
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: cannot read it: {exc}") from None


def manifest_not_found(path: Path) -> ManifestError:
    """The first error in a folder with no manifest: the absolute path looked at, and both fixes."""
    return ManifestError(
        f"no manifest at {path.absolute()}",
        hint="run 'alex-models init' to write a starter models.yaml, or pass -f PATH to use another",
    )


def parse_manifest(text: str, filename: str = "models.yaml") -> Manifest:
    """Validate manifest text. Pure: no I/O."""
    return _parsed(text, filename)[0]


def _parsed(text: str, filename: str) -> tuple[Manifest, Any]:
    """The manifest, and the plain structure it was validated from (what ``_doccache`` keeps)."""
    document = load_document(text, filename, ManifestError, what="'version' and 'models'")
    manifest = validate_document(Manifest, document, filename, ManifestError)
    return _checked(manifest, document, filename), plain_document(document)


def _checked(manifest: Manifest, document: Any, filename: str) -> Manifest:
    """``manifest``, once the checks across entries pass (pydantic sees one entry at a time)."""
    _check_references(manifest, document, filename)
    return manifest


def _check_references(manifest: Manifest, document: Any, filename: str) -> None:
    """Checks across entries, which pydantic sees one at a time."""
    for index, target in enumerate(manifest.emit):
        for key, names in (("model", [target.model] if target.model else []), ("only", target.only or [])):
            for name in names:
                if name not in manifest.models:
                    line, col = position(document, ["emit", index, key])
                    close = difflib.get_close_matches(name, list(manifest.models), n=1)
                    raise ManifestError(
                        f"{filename}:{line}:{col}: emit[{index}].{key}: {name!r} is not a model here",
                        hint=f"did you mean {close[0]!r}?" if close else "name a model under 'models:'",
                    )
    for name, spec in manifest.models.items():
        if spec.draft is None:
            continue
        loc: list[int | str] = ["models", name, "draft"]
        line, col = position(document, loc)
        if spec.draft == name:
            raise ManifestError(f"{filename}:{line}:{col}: model {name!r} cannot be its own draft")
        if spec.draft not in manifest.models:
            close = difflib.get_close_matches(spec.draft, list(manifest.models), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "add that model under 'models:'"
            raise ManifestError(
                f"{filename}:{line}:{col}: models.{name}.draft: {spec.draft!r} is not a model here",
                hint=hint,
            )
