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
from dataclasses import dataclass
from pathlib import PurePosixPath

from alex_models.lock import LockedFile, LockedModel, Role

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
