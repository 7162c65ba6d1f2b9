"""Models that live in a registry (``oci:`` entries), against a real ``docker-registry``
(distribution 2.8) on loopback: artifacts pushed by the ``oras`` Python SDK in Docker's model
format and in ModelPack format, and one published by our own ``push oci://``, are locked to their
manifest digest and layers and synced by digest; then the bad inputs: an unknown repository or
tag, a tag moved after the lock, a layer whose bytes are not its digest, a manifest that lies
about a size, an artifact with no GGUF layer or of no model format. Marker ``registry``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import oras.client
import pytest
from helpers import blob_files, cli, home, write_manifest
from registrykit import RegistryServer
from test_fleet import NAMES, ok, project_with_remote

from alex_models.lock import loads
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.oci import Address, Registry
from alex_models.oci.modelpack import FILEPATH, IMAGE_MANIFEST, MODEL_ARTIFACT, MODEL_CONFIG, WEIGHT_RAW
from alex_models.tinymodels import write_tiny_gguf

pytestmark = pytest.mark.registry

DOCKER_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DOCKER_GGUF = "application/vnd.docker.ai.gguf.v3"
DOCKER_MMPROJ = "application/vnd.docker.ai.gguf.v3.mmproj"
DOCKER_LICENSE = "application/vnd.docker.ai.license"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    server = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    try:
        yield server
    finally:
        server.stop()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def gguf(folder: Path, name: str, *, context_length: int = 1024, architecture: str = "llama") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_tiny_gguf(folder / name, context_length=context_length, architecture=architecture)


def oras_push(
    server: RegistryServer,
    reference: str,
    files: list[tuple[Path, str]],
    config: tuple[bytes, str],
    annotations: dict[str, dict[str, str]] | None = None,
) -> str:
    """Push with the ``oras`` SDK (a client nobody here wrote); the manifest's digest."""
    folder = files[0][0].parent
    (folder / "config.json").write_bytes(config[0])
    notes = None
    if annotations:
        notes = folder / "annotations.json"
        notes.write_text(json.dumps(annotations), encoding="utf-8")
    answer = oras.client.OrasClient(hostname=server.host, insecure=True).push(
        target=f"{server.host}/{reference}",
        files=[f"{path}:{media_type}" for path, media_type in files],
        manifest_config=f"{folder / 'config.json'}:{config[1]}",
        annotation_file=None if notes is None else str(notes),
        disable_path_validation=True,
        quiet=True,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.headers["Docker-Content-Digest"])


def publish(
    server: RegistryServer,
    repository: str,
    tag: str,
    layers: list[tuple[bytes, str, int | None]],
    config: bytes = b'{"config":{"format":"gguf"}}',
    config_type: str = DOCKER_CONFIG,
) -> str:
    """A manifest written as given (Docker's format: no file names), a layer's size as said (None:
    its true size); its digest."""
    registry = Registry(Address.parse(server.url(repository)))
    try:
        described = []
        for data, media_type, size in layers:
            described.append(
                {
                    "mediaType": media_type,
                    "digest": f"sha256:{registry.put_blob(data)}",
                    "size": size or len(data),
                }
            )
        manifest = {
            "schemaVersion": 2,
            "mediaType": IMAGE_MANIFEST,
            "config": {
                "mediaType": config_type,
                "digest": f"sha256:{registry.put_blob(config)}",
                "size": len(config),
            },
            "layers": described,
        }
        return registry.put_manifest(tag, json.dumps(manifest).encode(), IMAGE_MANIFEST)
    finally:
        registry.close()


def project(folder: Path, **models: dict[str, object]) -> Path:
    write_manifest(folder, models)
    return folder


def test_a_docker_model_artifact_pushed_by_oras_is_locked_to_its_digest_synced_and_emitted(
    registry: RegistryServer, tmp_path: Path
) -> None:
    made = tmp_path / "made"
    model = gguf(made, "smollm2-Q4_K_M.gguf")
    projector = gguf(made, "mmproj-smollm2-f16.gguf", architecture="clip")
    (made / "LICENSE").write_text("Apache-2.0\n", encoding="utf-8")
    config = json.dumps({"config": {"format": "gguf", "gguf": {"quantization": "Q4_K_M"}}}).encode()
    digest = oras_push(
        registry,
        "ai/smollm2:360M-Q4_K_M",
        [(model, DOCKER_GGUF), (projector, DOCKER_MMPROJ), (made / "LICENSE", DOCKER_LICENSE)],
        (config, DOCKER_CONFIG),
    )
    reference = f"{registry.host}/ai/smollm2:360M-Q4_K_M"
    folder = project(tmp_path / "p", smollm2={"oci": reference, "quant": "Q4_K_M"})

    ok(cli(folder, "lock"))
    lock_text = (folder / "models.lock").read_text(encoding="utf-8")
    entry = loads(lock_text).models["smollm2"]
    assert lock_text.splitlines()[1] == "version: 2"
    assert (entry.source, entry.registry, entry.repository, entry.tag) == (
        "oci",
        registry.host,
        "ai/smollm2",
        "360M-Q4_K_M",
    )
    assert entry.digest == digest  # what oras was answered
    assert {(f.path, f.role, f.size, f.sha256) for f in entry.files} == {
        (p.name, role, p.stat().st_size, sha256(p.read_bytes()))
        for p, role in ((model, "model"), (projector, "mmproj"), (made / "LICENSE", "file"))
    }

    ok(cli(folder, "sync"))
    assert sorted(p.name for p in blob_files()) == sorted(f.sha256 for f in entry.files)
    for file in entry.files:
        assert registry.requests("GET", f"/v2/ai/smollm2/blobs/sha256:{file.sha256}") >= 1
    argv = ok(cli(folder, "emit", "llama-server")).stdout
    views = home() / "llama.cpp" / "oci" / registry.host.replace(":", "_") / "ai" / "smollm2" / digest[7:]
    assert str(views / model.name) in argv
    assert f"--mmproj {views / projector.name}" in argv
    assert (views / model.name).read_bytes() == model.read_bytes()
