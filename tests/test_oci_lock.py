"""``oci:`` entries without a registry: the manifest key, the lock's version 2 and its fields, the
resolver's pick among an artifact's layers (``quant:``), the names Docker's unnamed layers get,
how a change is said, and where the views go. The registry itself: tests/test_oci_models.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from alex_models._ids import OciReference
from alex_models.errors import IntegrityError
from alex_models.lock import Lock, LockError, dumps, loads
from alex_models.lockdiff import model_change
from alex_models.manifest import ManifestError, parse_manifest
from alex_models.oci.artifact import _classify, address_of
from alex_models.remote import ArtifactLayer, ArtifactSnapshot, Facts
from alex_models.resolve import ResolveError, resolve
from alex_models.store import Store

REF = "registry.example:5000/team/qwen:v1"
DIGEST = "sha256:" + "d" * 64


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest(entry: str) -> str:
    return f"version: 1\nmodels:\n  m:\n{entry}"


@pytest.mark.parametrize(
    "reference",
    [REF, "localhost/qwen@sha256:" + "a" * 64, "docker.io/ai/smollm2:360M-Q4_K_M", "'[::1]:5000/a/b:latest'"],
)
def test_an_oci_reference_names_a_registry_a_repository_and_a_tag_or_digest(reference: str) -> None:
    found = parse_manifest(manifest(f"    oci: {reference}\n")).models["m"]

    assert found.lock_input(parse_manifest("version: 1\n").defaults).oci == reference.strip("'")


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("    oci: ai/smollm2:latest\n", "is not a registry reference"),  # no registry: docker would guess
        ("    oci: ghcr.io/team/qwen\n", "is not a registry reference"),  # no tag, no digest
        ("    oci: ghcr.io/Team/qwen:v1\n", "is not a registry reference"),  # repositories are lowercase
        ("    oci: ghcr.io/team/qwen:v1\n    repo: org/qwen\n", "an 'oci' model takes no 'repo'"),
        ("    oci: ghcr.io/team/qwen:v1\n    mmproj: auto\n", "an 'oci' model takes no 'mmproj'"),
    ],
    ids=["no-registry", "no-tag", "uppercase", "with-repo", "with-mmproj"],
)
def test_a_bad_oci_entry_is_refused_naming_why(entry: str, said: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(manifest(entry))

    assert said in caught.value.message


def layer(path: str, kind: str = "model") -> ArtifactLayer:
    return ArtifactLayer(path, kind, len(path), sha(path))  # type: ignore[arg-type]


def locked(*layers: ArtifactLayer, quant: str | None = None, said: str | None = None) -> Lock:
    quant_line = f"    quant: {quant}\n" if quant else ""
    wanted = parse_manifest(manifest(f"    oci: {REF}\n{quant_line}"))
    return resolve(wanted, Facts(artifacts={REF: ArtifactSnapshot(REF, DIGEST, said, layers)}))


def test_an_oci_entry_locks_at_version_2_and_reads_back_as_written() -> None:
    lock = locked(layer("model.gguf"), layer("LICENSE", "file"))
    text = dumps(lock)

    assert lock.version == 2
    assert loads(text) == lock
    assert text.split("models:\n", 1)[1].splitlines()[:7] == [
        "  m:",
        f"    input: {{oci: {REF}}}",
        "    source: oci",
        "    registry: registry.example:5000",
        "    repository: team/qwen",
        "    tag: v1",
        f"    digest: {DIGEST}",
    ]


def test_a_version_1_lock_holding_an_oci_entry_is_refused_as_tampered() -> None:
    text = dumps(locked(layer("model.gguf"))).replace("version: 2", "version: 1")

    with pytest.raises(LockError) as caught:
        loads(text)

    assert isinstance(caught.value, IntegrityError)
    assert "an 'oci' entry needs lock version 2" in caught.value.message


def test_an_oci_entry_whose_digest_is_not_the_one_its_input_pins_is_refused() -> None:
    text = (
        dumps(locked(layer("model.gguf"))).replace(":v1", "@sha256:" + "e" * 64).replace("    tag: v1\n", "")
    )

    with pytest.raises(LockError) as caught:
        loads(text)

    assert "'digest' differs from the digest the entry's 'input' pins" in caught.value.message


def test_quant_picks_one_model_among_several_and_keeps_every_other_layer() -> None:
    layers = (layer("q/m-Q4_K_M.gguf"), layer("q/m-Q8_0.gguf"), layer("mmproj-f16.gguf", "mmproj"))

    lock = locked(*layers, quant="Q8_0")

    assert [(f.path, f.role) for f in lock.models["m"].files] == [
        ("mmproj-f16.gguf", "mmproj"),
        ("q/m-Q8_0.gguf", "model"),
    ]
    with pytest.raises(ResolveError) as caught:
        locked(*layers)
    assert caught.value.message == (
        f"model 'm': {REF} ({DIGEST[:19]}) holds 2 models: q/m-Q4_K_M.gguf, q/m-Q8_0.gguf"
    )


def test_quant_on_a_one_model_artifact_must_be_the_one_it_declares() -> None:
    assert (
        locked(layer("model.gguf"), quant="q4_k_m", said="Q4_K_M").models["m"].files[0].path == "model.gguf"
    )

    with pytest.raises(ResolveError) as caught:
        locked(layer("model.gguf"), quant="Q8_0", said="Q4_K_M")

    assert (
        caught.value.message
        == f"model 'm': {REF} ({DIGEST[:19]}) holds one model, quantized Q4_K_M, not Q8_0"
    )


def test_docker_layers_with_no_names_are_named_by_kind_and_shards_as_llama_cpp_finds_them() -> None:
    gguf, mmproj = "application/vnd.docker.ai.gguf.v3", "application/vnd.docker.ai.mmproj"
    descriptors = [
        (sha("a"), 1, gguf, {}),
        (sha("b"), 2, gguf, {}),
        (sha("c"), 3, mmproj, {}),
        (sha("d"), 4, "application/vnd.docker.ai.license", {}),
        (sha("e"), 5, "application/vnd.docker.ai.license", {"org.opencontainers.image.title": "NOTICE"}),
    ]

    layers = _classify(OciReference("r.io", "a/b", "t", None), descriptors, docker=True)

    assert [(x.path, x.kind) for x in layers] == [
        ("model-00001-of-00002.gguf", "model"),
        ("model-00002-of-00002.gguf", "model"),
        ("mmproj.gguf", "mmproj"),
        ("LICENSE", "file"),
        ("NOTICE", "file"),
    ]


def test_docker_hub_is_asked_at_its_api_host_with_library_for_a_one_part_name() -> None:
    assert address_of(OciReference("docker.io", "ai/smollm2", "latest", None)).origin == (
        "https://registry-1.docker.io"
    )
    assert address_of(OciReference("docker.io", "qwen", "latest", None)).repository == "library/qwen"


def test_a_moved_tag_is_said_as_the_digests_before_and_after() -> None:
    before = locked(layer("model.gguf")).models["m"]
    after = before.model_copy(update={"digest": "sha256:" + "f" * 64})

    change = model_change("m", before, after)

    assert change is not None
    assert change.describe() == [
        f"~ m: {REF} sha256:dddddddddddd -> sha256:ffffffffffff",
        "    (the same files, byte for byte)",
    ]


def test_an_oci_models_views_sit_under_its_registry_repository_and_digest(tmp_path: Path) -> None:
    entry = locked(layer("model.gguf")).models["m"]

    view = Store(tmp_path).view_path(entry, entry.files[0])

    assert view == Path(
        tmp_path, "llama.cpp", "oci", "registry.example_5000", "team", "qwen", "d" * 64, "model.gguf"
    )
