"""Models that live in a registry: an ``oci:`` reference read as the facts ``lock`` pins.

``read_artifact`` asks the registry for the manifest the reference names (a tag, or a digest the
bytes must hash to), its config (for the quantization it declares) and a ``HEAD`` of every layer
(the registry must hold each with the size the manifest says), and classifies the layers by the
artifact's format:

* **ModelPack** (github.com/modelpack/model-spec: config ``application/vnd.cncf.model.config.v1+json``
  or artifactType ``application/vnd.cncf.model.manifest.v1+json``): ``…weight.v1.raw`` layers are
  the weights, a ``.gguf`` with ``mmproj`` in its name the projector (our ``io.alex-models.role``
  annotation, when there, says the role outright); other raw layers are files. Weights packed as
  tar (``…weight.v1.tar``, ``+gzip``, ``+zstd``) are refused: such a layer is no GGUF file.
* **Docker's** (config ``application/vnd.docker.ai.model.config.v0.1+json``, as Docker Hub's
  ``ai/*`` models and ``docker model package`` publish them): ``…gguf.v3`` layers are the model
  (several: a split model's shards, in order), ``…gguf.v3.mmproj`` and ``…mmproj`` the projector,
  ``…gguf.v3.lora`` adapters, the license and the chat template files.

A layer's file name is its ``org.cncf.model.filepath`` annotation, else its
``org.opencontainers.image.title`` (what oras writes), else one made from its kind (``model.gguf``,
a split model's ``model-00001-of-00003.gguf``, ``mmproj.gguf``, ``LICENSE``, ``template.jinja``).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

from alex_models._ids import SHA256_RE, OciReference, oci_reference
from alex_models._units import MiB
from alex_models.errors import IntegrityError, RemoteError, UserError
from alex_models.lock import Role
from alex_models.oci.modelpack import FILEPATH, MODEL_ARTIFACT, MODEL_CONFIG, ROLE, TITLE, WEIGHT_RAW
from alex_models.oci.registry import Address, Registry
from alex_models.remote import ArtifactLayer, ArtifactSnapshot

DOCKER_CONFIG = "application/vnd.docker.ai.model.config"
"""The prefix of Docker's versioned model config types (``….v0.1+json``)."""
DOCKER_GGUF = "application/vnd.docker.ai.gguf.v3"
_DOCKER_KINDS: dict[str, tuple[Role, str]] = {
    DOCKER_GGUF: ("model", "model.gguf"),
    "application/vnd.docker.ai.gguf.v3.mmproj": ("mmproj", "mmproj.gguf"),
    "application/vnd.docker.ai.mmproj": ("mmproj", "mmproj.gguf"),
    "application/vnd.docker.ai.gguf.v3.lora": ("lora", "lora.gguf"),
    "application/vnd.docker.ai.license": ("file", "LICENSE"),
    "application/vnd.docker.ai.chat.template.jinja": ("file", "template.jinja"),
}
"""Each Docker layer type: its role, and the file name it gets when its layer names none."""
_PACKED_WEIGHTS = "application/vnd.cncf.model.weight.v1.tar"
_ROLES: frozenset[str] = frozenset(Role.__args__)  # type: ignore[attr-defined]
_CONFIG_AT_MOST = 1 * MiB
"""A model config is a few hundred bytes; a larger one is not read (its quantization is unknown)."""
_IMAGE_MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_DOCKER_HUB = ("docker.io", "index.docker.io")


def address_of(reference: OciReference) -> Address:
    """Where the reference's repository is asked: Docker Hub's API host for ``docker.io``, with its
    ``library/`` for a one-part name, as docker does; plain HTTP only on loopback."""
    if reference.registry in _DOCKER_HUB:
        repository = (
            reference.repository if "/" in reference.repository else f"library/{reference.repository}"
        )
        return Address.parse(f"oci://registry-1.docker.io/{repository}")
    return Address.parse(f"oci://{reference.registry}/{reference.repository}")


def open_registry(name: str) -> Registry:
    """The repository ``REGISTRY/REPOSITORY`` (a lock entry's), opened for one command."""
    registry, _, repository = name.partition("/")
    return Registry(address_of(OciReference(registry, repository, None, None)))


def read_artifact(text: str) -> ArtifactSnapshot:
    """The artifact ``text`` (a manifest's ``oci:`` reference) names, as the registry holds it now."""
    reference = oci_reference(text)
    if reference is None:
        raise UserError(f"{text!r} is not a registry reference")  # the manifest checked it already
    registry = Registry(address_of(reference))
    try:
        return _read(registry, reference)
    finally:
        registry.close()


def _read(registry: Registry, reference: OciReference) -> ArtifactSnapshot:
    found = registry.get_manifest(reference.digest or str(reference.tag))
    if found is None:
        what = f"no tag {reference.tag!r}" if reference.tag else f"no manifest {reference.digest}"
        raise UserError(
            f"{reference}: not found ({reference.registry} has no repository {reference.repository!r}, "
            f"or {what} in it)",
            hint="check the 'oci' reference in models.yaml (skopeo inspect docker://REFERENCE lists it)",
        )
    body, media_type = found
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if reference.digest is not None and digest != reference.digest:
        raise IntegrityError(
            f"{reference}: the registry answered a manifest whose digest is {digest}",
            hint="the registry altered the manifest; report it to its operators",
        )
    manifest = _json(reference, body, "its manifest")
    kind = media_type or str(manifest.get("mediaType", ""))
    if kind not in _IMAGE_MANIFESTS:
        raise UserError(
            f"{reference}: a {kind or 'manifest of no media type'}, not a model artifact's image manifest",
            hint="name one artifact (an image index lists several: pick one by its digest)",
        )
    config = _mapping(manifest.get("config"))
    config_type = str(config.get("mediaType", ""))
    if config_type.startswith(DOCKER_CONFIG):
        docker = True
    elif config_type == MODEL_CONFIG or manifest.get("artifactType") == MODEL_ARTIFACT:
        docker = False
    else:
        raise UserError(
            f"{reference}: not a model artifact (config {config_type or 'none'})",
            hint="alex-models reads ModelPack (application/vnd.cncf.model.*) and Docker model "
            "(application/vnd.docker.ai.*) artifacts",
        )
    descriptors = [_descriptor(reference, raw) for raw in _list(manifest.get("layers"))]
    for sha256, size, _, _ in descriptors:
        _check_held(registry, reference, sha256, size)
    quantization = _quantization(registry, reference, config, docker)
    layers = _classify(reference, descriptors, docker)
    return ArtifactSnapshot(str(reference), digest, quantization, tuple(layers))


Descriptor = tuple[str, int, str, dict[str, str]]
"""A layer as its manifest describes it: SHA256, size, media type, annotations."""


def _descriptor(reference: OciReference, raw: object) -> Descriptor:
    item = raw if isinstance(raw, dict) else {}
    digest, size, media_type = item.get("digest"), item.get("size"), item.get("mediaType")
    annotations = _mapping(item.get("annotations"))
    sha256 = _sha256_of(digest)
    if (
        not SHA256_RE.fullmatch(sha256)
        or type(size) is not int
        or size < 0
        or not isinstance(media_type, str)
    ):
        raise UserError(
            f"{reference}: a layer has no sha256 digest, size or media type ({str(raw)[:120]})",
            hint="alex-models pins layers by SHA256; republish the artifact with sha256 digests",
        )
    return sha256, size, media_type, {str(k): str(v) for k, v in annotations.items()}


def _check_held(registry: Registry, reference: OciReference, sha256: str, size: int) -> None:
    """The registry holds the layer with the size its manifest says: a lie is caught here, before
    anything is locked or fetched."""
    held = registry.blob_size(sha256)
    if held is None:
        raise RemoteError(
            f"{reference}: its layer sha256:{sha256} is not in the registry",
            hint="the artifact is incomplete; push it again",
        )
    if held != size:
        raise IntegrityError(
            f"{reference}: its manifest says layer sha256:{sha256} has {size} bytes, the registry "
            f"holds {held}",
            hint="the manifest does not describe its layers; republish the artifact",
        )


def _quantization(
    registry: Registry, reference: OciReference, config: dict[str, Any], docker: bool
) -> str | None:
    """The quantization the artifact's config declares, if it says one."""
    digest, size = config.get("digest"), config.get("size")
    sha256 = _sha256_of(digest)
    if not SHA256_RE.fullmatch(sha256) or type(size) is not int or not 0 < size <= _CONFIG_AT_MOST:
        return None
    body = registry.get_blob(sha256, size)
    if body is None:
        raise RemoteError(f"{reference}: its config sha256:{sha256} is not in the registry")
    settings = _json(reference, body, "its config").get("config")
    if not isinstance(settings, dict):
        return None
    said = settings.get("quantization")
    if said is None and docker and isinstance(settings.get("gguf"), dict):
        said = settings["gguf"].get("quantization")
    return said if isinstance(said, str) and said else None


def _classify(reference: OciReference, descriptors: list[Descriptor], docker: bool) -> list[ArtifactLayer]:
    kinds = [_kind(reference, media_type, notes, docker) for _, _, media_type, notes in descriptors]
    unnamed = Counter(
        base for (_, base), (_, _, _, notes) in zip(kinds, descriptors, strict=True) if not _named(notes)
    )
    seen: Counter[str] = Counter()
    layers = []
    for (sha256, size, _, notes), (role, base) in zip(descriptors, kinds, strict=True):
        path = _named(notes)
        if path is None:
            seen[base] += 1
            path = _made_name(base or f"layer-{sha256[:12]}", seen[base], unnamed[base])
        layers.append(ArtifactLayer(path, role, size, sha256))
    return layers


def _kind(reference: OciReference, media_type: str, notes: dict[str, str], docker: bool) -> tuple[Role, str]:
    """A layer's role, and the base of the file name it gets when it names none."""
    if docker:
        return _DOCKER_KINDS.get(media_type, ("file", ""))
    if media_type.startswith(_PACKED_WEIGHTS):
        raise UserError(
            f"{reference}: its weights are packed ({media_type}), and llama.cpp needs the GGUF file",
            hint=f"publish the weights as raw layers ({WEIGHT_RAW}), one file per layer",
        )
    said = notes.get(ROLE, "")
    if said in _ROLES:
        return said, "model.gguf" if said == "model" else ""  # type: ignore[return-value]
    if media_type != WEIGHT_RAW:
        return "file", ""
    name = (_named(notes) or "model.gguf").rsplit("/", 1)[-1].lower()
    if not name.endswith(".gguf"):
        return "file", ""
    return ("mmproj", "mmproj.gguf") if "mmproj" in name else ("model", "model.gguf")


def _named(notes: dict[str, str]) -> str | None:
    return notes.get(FILEPATH) or notes.get(TITLE) or None


def _made_name(base: str, number: int, count: int) -> str:
    """``base`` alone, or numbered among ``count`` unnamed layers of one kind: a model's layers are
    a split model's shards, named as llama.cpp finds them (``model-00001-of-00002.gguf``)."""
    if count == 1:
        return base
    stem, dot, extension = base.rpartition(".") if "." in base else (base, "", "")
    if base == "model.gguf":
        return f"model-{number:05d}-of-{count:05d}.gguf"
    return f"{stem}-{number}{dot}{extension}"


def _sha256_of(digest: object) -> str:
    """The hex of a descriptor's ``sha256:…`` digest; "" for any other value (refused by its caller)."""
    return digest[len("sha256:") :] if isinstance(digest, str) and digest.startswith("sha256:") else ""


def _json(reference: OciReference, body: bytes, what: str) -> dict[str, Any]:
    try:
        found = json.loads(body)
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise UserError(f"{reference}: {what} is not a JSON object", hint="republish the artifact")
    return found


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
