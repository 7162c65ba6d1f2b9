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
from pathlib import Path

import oras.client  # type: ignore[import-untyped]  # the SDK ships no type information
import pytest
from helpers import blob_files, cli, home, write_manifest
from registrykit import RegistryServer
from test_fleet import NAMES, ok, project_with_remote

from alex_models._units import human_size
from alex_models.lock import loads
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.oci import Address, Registry
from alex_models.oci.modelpack import FILEPATH, IMAGE_MANIFEST, MODEL_CONFIG, WEIGHT_RAW
from alex_models.tinymodels import write_tiny_gguf

pytestmark = pytest.mark.registry

DOCKER_CONFIG = "application/vnd.docker.ai.model.config.v0.1+json"
DOCKER_GGUF = "application/vnd.docker.ai.gguf.v3"
DOCKER_MMPROJ = "application/vnd.docker.ai.gguf.v3.mmproj"
DOCKER_LICENSE = "application/vnd.docker.ai.license"


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
    status = json.loads(ok(cli(folder, "status", "--json")).stdout)
    assert (status["synced"], status["models"]["smollm2"]["sync_state"]) == (True, "synced"), status
    ok(cli(folder, "verify"))
    asked = registry.requests("GET", "/v2/") + registry.requests("HEAD", "/v2/")
    ok(cli(folder, "sync"))  # nothing missing: the registry is not asked
    assert registry.requests("GET", "/v2/") + registry.requests("HEAD", "/v2/") == asked


def modelpack_config(quantization: str | None = None) -> bytes:
    settings = {"format": "gguf", **({"quantization": quantization} if quantization else {})}
    return json.dumps(
        {"descriptor": {"name": "qwen"}, "config": settings, "modelfs": {"type": "layers"}}
    ).encode()


def test_a_modelpack_artifact_pushed_by_oras_with_two_quants_locks_the_one_quant_picks(
    registry: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = tmp_path / "made"
    q4 = gguf(made, "qwen-Q4_K_M.gguf", context_length=1024)
    q8 = gguf(made, "qwen-Q8_0.gguf", context_length=2048)
    (made / "README.md").write_text("# qwen\n", encoding="utf-8")
    paths = {q4: f"gguf/{q4.name}", q8: f"gguf/{q8.name}", made / "README.md": "README.md"}
    digest = oras_push(
        registry,
        "team/qwen:all",
        [(q4, WEIGHT_RAW), (q8, WEIGHT_RAW), (made / "README.md", "application/vnd.cncf.model.doc.v1.raw")],
        (modelpack_config(), MODEL_CONFIG),
        {str(path): {FILEPATH: inside} for path, inside in paths.items()},
    )
    reference = f"{registry.host}/team/qwen:all"

    unpicked = cli(project(tmp_path / "unpicked", qwen={"oci": reference}), "lock")
    assert unpicked.returncode == 1
    assert f"{reference} ({digest[:19]}) holds 2 models: gguf/qwen-Q4_K_M.gguf, gguf/qwen-Q8_0.gguf" in (
        unpicked.stderr
    )
    assert "pick one with 'quant:'" in unpicked.stderr

    folder = project(tmp_path / "p", qwen={"oci": reference, "quant": "q8_0"})
    ok(cli(folder, "sync"))
    entry = loads((folder / "models.lock").read_text(encoding="utf-8")).models["qwen"]
    assert entry.digest == digest
    assert [(f.path, f.role, f.sha256) for f in entry.files] == [
        ("README.md", "file", sha256((made / "README.md").read_bytes())),
        ("gguf/qwen-Q8_0.gguf", "model", sha256(q8.read_bytes())),
    ]
    assert sha256(q4.read_bytes()) not in {p.name for p in blob_files()}
    assert ok(cli(folder, "path", "qwen")).stdout.strip().endswith("gguf/qwen-Q8_0.gguf")

    # A --from remote is asked first, as for a Hub model: a fresh store reads nothing from the registry.
    team = (tmp_path / "team").as_uri()
    ok(cli(folder, "push", team))
    monkeypatch.setenv("ALEX_MODELS_HOME", str(tmp_path / "second-store"))
    asked = registry.requests("GET", "/v2/team/qwen/blobs/")
    ok(cli(folder, "sync", "--from", team))
    assert sorted(p.name for p in blob_files()) == sorted(f.sha256 for f in entry.files)
    assert registry.requests("GET", "/v2/team/qwen/blobs/") == asked


def test_a_model_our_push_published_locks_back_to_the_same_files_and_syncs_from_the_registry(
    registry: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    ci = tmp_path / "ci"
    project_with_remote(ci, mirror_root, tmp_path, remote=registry.url("team/pushed"))
    ok(cli(ci, "sync"))
    ok(cli(ci, "push"))
    published = loads((ci / "models.lock").read_text(encoding="utf-8")).models[NAMES[0]]

    monkeypatch.setenv("ALEX_MODELS_HOME", str(tmp_path / "host-store"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: the Hub is not asked
    folder = project(tmp_path / "host", mine={"oci": f"{registry.host}/team/pushed:{NAMES[0]}"})
    ok(cli(folder, "sync"))

    entry = loads((folder / "models.lock").read_text(encoding="utf-8")).models["mine"]
    assert [(f.path, f.role, f.size, f.sha256) for f in entry.files] == [
        (f.path, f.role, f.size, f.sha256) for f in published.files
    ]
    assert sorted(p.name for p in blob_files()) == sorted(f.sha256 for f in published.files)


@pytest.mark.parametrize(
    ("reference", "missing"),
    [("team/nothing-here:v1", "no tag 'v1'"), ("ai/smollm2:no-such-tag", "no tag 'no-such-tag'")],
    ids=["unknown-repository", "unknown-tag"],
)
def test_an_unknown_repository_or_tag_is_one_line_naming_the_reference(
    registry: RegistryServer, tmp_path: Path, reference: str, missing: str
) -> None:
    publish(registry, "ai/smollm2", "present", [(b"GGUF", DOCKER_GGUF, None)])
    folder = project(tmp_path / "p", m={"oci": f"{registry.host}/{reference}"})

    run = cli(folder, "lock")

    assert run.returncode == 1
    assert run.stderr.splitlines()[0] == (
        f"error: {registry.host}/{reference}: not found ({registry.host} has no repository "
        f"{reference.split(':', maxsplit=1)[0]!r}, or {missing} in it)"
    )
    assert "Traceback" not in run.stderr
    assert not (folder / "models.lock").exists()


def test_a_tag_moved_after_the_lock_still_syncs_the_locked_bytes_and_outdated_reports_both_digests(
    registry: RegistryServer, tmp_path: Path
) -> None:
    first = gguf(tmp_path / "v1", "m.gguf", context_length=1024).read_bytes()
    second = gguf(tmp_path / "v2", "m.gguf", context_length=4096).read_bytes()
    locked = publish(registry, "team/moving", "stable", [(first, DOCKER_GGUF, None)])
    by_digest = f"{registry.host}/team/moving@{locked}"
    folder = project(
        tmp_path / "p", m={"oci": f"{registry.host}/team/moving:stable"}, pinned={"oci": by_digest}
    )
    ok(cli(folder, "lock"))
    moved = publish(registry, "team/moving", "stable", [(second, DOCKER_GGUF, None)])

    ok(cli(folder, "lock", "--check"))  # the lock still matches models.yaml: it is the authority
    ok(cli(folder, "sync"))
    assert [p.name for p in blob_files()] == [sha256(first)]  # both models: the locked bytes
    assert (Path(ok(cli(folder, "path", "m")).stdout.strip())).read_bytes() == first

    outdated = cli(folder, "outdated", "--exit-code")
    assert outdated.returncode == 1
    assert f"~ m: {registry.host}/team/moving:stable {locked[:19]} -> {moved[:19]}" in outdated.stdout
    assert len(first) == len(second)  # only the context length differs: "same size"
    assert f"    ~ model.gguf: new SHA256, same size ({human_size(len(second))})" in outdated.stdout
    report = json.loads(ok(cli(folder, "outdated", "--json")).stdout)
    statuses = {m["name"]: (m["status"], m["locked_digest"], m["current_digest"]) for m in report["models"]}
    assert statuses == {"m": ("outdated", locked, moved), "pinned": ("pinned", locked, None)}
    assert f"= pinned: {by_digest}, a digest, which cannot move" in outdated.stdout

    dry = ok(cli(folder, "lock", "--upgrade", "--dry-run"))
    assert f"~ m: {registry.host}/team/moving:stable {locked[:19]} -> {moved[:19]}" in dry.stdout
    assert loads((folder / "models.lock").read_text(encoding="utf-8")).models["m"].digest == locked
    ok(cli(folder, "lock", "--upgrade"))
    upgraded = loads((folder / "models.lock").read_text(encoding="utf-8")).models
    assert (upgraded["m"].digest, upgraded["pinned"].digest) == (moved, locked)


def test_a_layer_whose_bytes_are_not_its_digest_is_never_stored(
    registry: RegistryServer, tmp_path: Path
) -> None:
    data = gguf(tmp_path / "made", "m.gguf").read_bytes()
    publish(registry, "team/damaged", "v1", [(data, DOCKER_GGUF, None)])
    folder = project(tmp_path / "p", m={"oci": f"{registry.host}/team/damaged:v1"})
    ok(cli(folder, "lock"))
    digest = sha256(data)
    stored = registry.root / "data/docker/registry/v2/blobs/sha256" / digest[:2] / digest / "data"
    stored.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))  # same size, other bytes

    run = cli(folder, "sync")

    assert run.returncode == 3, run.stderr
    assert f"error: {registry.host}/team/damaged/model.gguf: downloaded bytes have SHA256 " in run.stderr
    assert f"the lock says {digest}" in run.stderr
    assert "Traceback" not in run.stderr
    assert blob_files() == []


def test_a_manifest_that_lies_about_a_size_is_refused_before_anything_is_locked_or_stored(
    registry: RegistryServer, tmp_path: Path
) -> None:
    data = gguf(tmp_path / "made", "m.gguf").read_bytes()
    publish(registry, "team/liar", "v1", [(data, DOCKER_GGUF, len(data) + 1)])
    folder = project(tmp_path / "p", m={"oci": f"{registry.host}/team/liar:v1"})

    run = cli(folder, "sync")

    assert run.returncode == 3, run.stderr
    assert run.stderr.splitlines()[0] == (
        f"error: {registry.host}/team/liar:v1: its manifest says layer sha256:{sha256(data)} has "
        f"{len(data) + 1} bytes, the registry holds {len(data)}"
    )
    assert not (folder / "models.lock").exists()
    assert blob_files() == []


@pytest.mark.parametrize(
    ("tag", "layers", "config_type", "said"),
    [
        (
            "license-only",
            [(b"Apache-2.0\n", DOCKER_LICENSE, None)],
            DOCKER_CONFIG,
            "holds no GGUF model layer",
        ),
        (
            "image",
            [(b"GGUF", "application/octet-stream", None)],
            "application/vnd.oci.image.config.v1+json",
            "not a model artifact (config application/vnd.oci.image.config.v1+json)",
        ),
        (
            "packed",
            [(b"GGUF", "application/vnd.cncf.model.weight.v1.tar", None)],
            MODEL_CONFIG,
            "its weights are packed (application/vnd.cncf.model.weight.v1.tar)",
        ),
    ],
    ids=["no-gguf-layer", "no-model-format", "packed-weights"],
)
def test_an_artifact_that_is_no_gguf_model_is_one_line(
    registry: RegistryServer,
    tmp_path: Path,
    tag: str,
    layers: list[tuple[bytes, str, int | None]],
    config_type: str,
    said: str,
) -> None:
    publish(registry, "team/odd", tag, layers, config_type=config_type)
    folder = project(tmp_path / "p", m={"oci": f"{registry.host}/team/odd:{tag}"})

    run = cli(folder, "lock")

    assert run.returncode == 1, run.stderr
    [line, *hint] = run.stderr.splitlines()
    assert line.startswith(f"error: {'model ' if tag == 'license-only' else ''}")
    assert said in line
    assert len(hint) <= 1
    assert "Traceback" not in run.stderr
    assert not (folder / "models.lock").exists()
