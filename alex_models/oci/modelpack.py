"""What ``push`` publishes to a registry, as bytes: a locked model as a CNCF ModelPack artifact
(github.com/modelpack/model-spec, ``docs/spec.md`` and ``docs/config.md``), and a small file (the
lock, its manifest) as a one-layer artifact. docs/reference/oci.md says what was chosen where the
spec leaves a choice.

Everything here is a function of the lock alone (no timestamps, fixed key order), so pushing the
same lock twice gives the same digests.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from alex_models.errors import UsageError, UserError
from alex_models.lock import Lock, LockedFile, LockedModel, Role

IMAGE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MODEL_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODEL_CONFIG = "application/vnd.cncf.model.config.v1+json"
WEIGHT_RAW = "application/vnd.cncf.model.weight.v1.raw"
"""A GGUF (model, shard, projector, adapter): the file itself, so the layer's digest is its SHA256."""
WEIGHT_CONFIG_RAW = "application/vnd.cncf.model.weight.config.v1.raw"
"""Any other locked file (a template, a tokenizer), also as it is."""
FILEPATH = "org.cncf.model.filepath"
TITLE = "org.opencontainers.image.title"
"""The file name oras and other generic clients give a layer they pull."""
ROLE = "io.alex-models.role"
"""Our own layer annotation: the file's role in the lock (model, mmproj, lora, a draft head…)."""
FILE_ARTIFACT = "application/vnd.alex-models.file.v1"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
_FILE_TYPES = {
    ".lock": "application/vnd.alex-models.lock.v1+yaml",
    ".yaml": "application/vnd.alex-models.manifest.v1+yaml",
}
_ROLE_ORDER: dict[Role, int] = {
    "model": 0, "mtp": 1, "eagle3": 1, "dflash": 1, "dspark": 1,
    "mmproj": 2, "lora": 3, "preset": 4, "file": 4,
}  # fmt: skip
"""Every role of the lock has a place (a test checks): weights, draft heads, projector, adapters,
then the rest."""
_NOT_WEIGHTS: frozenset[Role] = frozenset({"file", "preset"})


DEFAULT_TAG = "{name}"
TAG_FIELDS = ("name", "quant", "revision", "commit")
"""What a ``--tag`` template may name: the model's name, its ``quant:`` label, the revision it was
locked from (``main``) and the commit that pinned (40 hex; ``{commit:.12}`` keeps 12)."""
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
"""The distribution spec's tag grammar."""


@dataclass(frozen=True)
class Artifact:
    """An artifact ready to push: its config blob and manifest, and the files it names as layers."""

    config: bytes
    manifest: bytes
    layers: tuple[LockedFile, ...]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def layers_of(entry: LockedModel) -> list[LockedFile]:
    """The model's files in layer order: the weights first (split shards in order, as their names
    sort), then projector, adapters and other files."""
    return sorted(entry.files, key=lambda file: (_ROLE_ORDER[file.role], file.path))


def model_artifact(name: str, entry: LockedModel) -> Artifact:
    """``entry`` as a ModelPack image manifest and its model config."""
    layers = layers_of(entry)
    descriptor: dict[str, str] = {"name": name}
    if entry.source == "hf":
        descriptor["revision"] = f"{entry.repo}@{entry.commit}"
    elif entry.source == "oci":
        descriptor["revision"] = f"{entry.registry}/{entry.repository}@{entry.digest}"
    elif entry.url is not None:
        descriptor["sourceURL"] = entry.url
    settings = {"format": "gguf"}
    if entry.input.quant:
        settings["quantization"] = entry.input.quant
    config = _json(
        {
            "descriptor": descriptor,
            "config": settings,
            "modelfs": {"type": "layers", "diffIds": [f"sha256:{file.sha256}" for file in layers]},
        }
    )
    described = [
        _descriptor(
            WEIGHT_CONFIG_RAW if file.role in _NOT_WEIGHTS else WEIGHT_RAW,
            file.sha256,
            file.size,
            {FILEPATH: file.path, ROLE: file.role, TITLE: file.path},
        )
        for file in layers
    ]
    return Artifact(config, _manifest(MODEL_ARTIFACT, MODEL_CONFIG, config, described), tuple(layers))


def file_manifest(key: str, data: bytes) -> bytes:
    """A small file published under ``key`` (``locks/<sha256>.lock``) as a one-layer artifact with
    the empty config; its layer is named by the key's last part."""
    name = PurePosixPath(key).name
    kind = _FILE_TYPES.get(PurePosixPath(key).suffix, "application/octet-stream")
    layer = _descriptor(kind, hashlib.sha256(data).hexdigest(), len(data), {TITLE: name})
    return _manifest(FILE_ARTIFACT, EMPTY_CONFIG, EMPTY, [layer])


def model_tags(lock: Lock, names: Sequence[str], template: str = DEFAULT_TAG) -> dict[str, str]:
    """The tag each of these models is published under, from ``template`` (``{name}-{quant}``).

    Checked before anything is sent: a template naming another field is a usage error; a model
    that has no value for a field it names, a tag outside the spec's grammar, or two models given
    one tag (the second would replace the first) is an error naming the model."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise UsageError(
            f"--tag {template!r}: {exc}", hint="write fields in braces: --tag '{name}-{quant}'"
        ) from None
    unknown = sorted({field for field in fields if field not in TAG_FIELDS})
    if unknown:
        raise UsageError(
            f"--tag {template!r} names {', '.join(unknown)}, which is not a field of a model",
            hint="use " + ", ".join(f"{{{field}}}" for field in TAG_FIELDS),
        )
    tags: dict[str, str] = {}
    for name in names:
        entry = lock.models[name]
        values = {
            "name": name,
            "quant": entry.input.quant,
            "revision": entry.revision,
            "commit": entry.commit,
        }
        lacking = [field for field in fields if values[field] is None]
        if lacking:
            raise UserError(
                f"model {name!r} has no {lacking[0]} for --tag {template!r}",
                hint="leave that field out of the template, or push the model apart with --only",
            )
        try:
            tag = template.format_map(values)
        except ValueError as exc:  # a format spec that does not apply to text: {name:d}
            raise UsageError(
                f"--tag {template!r}: {exc}", hint="write fields as {name} or {commit:.12}"
            ) from None
        if not _TAG_RE.fullmatch(tag):
            raise UserError(
                f"--tag {template!r} gives model {name!r} the tag {tag!r}, which a registry refuses",
                hint="a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'",
            )
        other = next((known for known, given in tags.items() if given == tag), None)
        if other is not None:
            raise UserError(
                f"--tag {template!r} gives models {other!r} and {name!r} the same tag {tag!r}",
                hint="add a field that tells them apart, such as {name}",
            )
        tags[name] = tag
    return tags


def tag_of(key: str) -> str:
    """The tag a small file's artifact gets: its key with ``/`` as ``-`` (``locks-<sha256>.lock``)."""
    return key.replace("/", "-")


def _manifest(artifact_type: str, config_type: str, config: bytes, layers: list[dict[str, object]]) -> bytes:
    return _json(
        {
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST,
            "artifactType": artifact_type,
            "config": _descriptor(config_type, hashlib.sha256(config).hexdigest(), len(config)),
            "layers": layers,
        }
    )


def _descriptor(
    media_type: str, sha256: str, size: int, annotations: dict[str, str] | None = None
) -> dict[str, object]:
    found: dict[str, object] = {"mediaType": media_type, "digest": f"sha256:{sha256}", "size": size}
    if annotations:
        found["annotations"] = annotations
    return found


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
