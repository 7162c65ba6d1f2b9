"""Cross-repository mounts, against a real ``docker-registry`` (distribution 2.8) on loopback: a
model locked as ``oci:`` from one repository, pushed to another repository of the same registry,
is mounted there (``POST …/blobs/uploads/?mount=…&from=…``), its layers' bytes never sent, and
clients nobody here wrote read the result; under token auth the mount asks for pull on the source
and push on the target in one token, and a source the login may not pull is uploaded instead.
Marker ``registry``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import oras.client  # type: ignore[import-untyped]  # the SDK ships no types
import pytest
from helpers import cli
from registrykit import PASSWORD, USER, RegistryServer, docker_config, inspect
from s3kit import Meter
from test_fleet import ok
from test_oci_models import DOCKER_GGUF, DOCKER_LICENSE, gguf, project, publish
from tokenkit import TokenService

from alex_models._units import human_size

pytestmark = pytest.mark.registry

PADDING = 4_000_000
"""Bytes that make the weights stand out from the manifests, config and lock a push also sends."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scopes(asked: tuple[str, ...]) -> set[str]:
    """Scopes asked for, one action each: the registry names actions in either order."""
    return {
        f"{kind}:{action}"
        for scope in asked
        for kind, _, actions in [scope.rpartition(":")]
        for action in actions.split(",")
    }


def published_model(server: RegistryServer, repository: str, folder: Path) -> list[bytes]:
    """A Docker-format model (weights and a license) in ``repository``; its layers' bytes."""
    weights = gguf(folder, "model.gguf").read_bytes() + repository.encode() * (PADDING // len(repository))
    layers = [weights, f"license of {repository}\n".encode()]
    publish(server, repository, "v1", [(layers[0], DOCKER_GGUF, None), (layers[1], DOCKER_LICENSE, None)])
    return layers


def test_a_model_locked_from_one_repository_is_mounted_into_another_without_sending_its_bytes(
    registry: RegistryServer, tmp_path: Path
) -> None:
    """Each Meter is one name of the same registry: the lock names it through ``mounting``, so a
    push there mounts; ``plain`` is another name, so the same push there sends every byte."""
    layers = published_model(registry, "ai/mounted", tmp_path / "made")
    with Meter(f"http://{registry.host}") as mounting, Meter(f"http://{registry.host}") as plain:
        host = mounting.url.removeprefix("http://")
        folder = project(tmp_path / "ci", mine={"oci": f"{host}/ai/mounted:v1"})
        ok(cli(folder, "sync"))
        before = mounting.received
        pushed = json.loads(ok(cli(folder, "push", f"oci://{host}/team/models", "--json")).stdout)
        with_mount = mounting.received - before
        sent = json.loads(ok(cli(folder, "push", f"oci://{plain.url[7:]}/team/sent", "--json")).stdout)
        without_mount = plain.received
        said = ok(cli(folder, "push", f"oci://{host}/team/again")).stdout

    assert sorted(b["sha256"] for b in pushed["mounted"]) == sorted(sha256(d) for d in layers)
    assert (pushed["uploaded"], pushed["bytes"]) == ([], 0)
    assert pushed["bytes_mounted"] == sum(len(d) for d in layers)
    assert sent["mounted"] == []
    assert sent["bytes"] == sum(len(d) for d in layers)
    assert without_mount > PADDING > 100 * with_mount, (with_mount, without_mount)
    assert registry.requests("POST", '&from=ai%2Fmounted HTTP/1.1" 201') == len(layers) * 2, (
        "one mount a layer"
    )
    total = human_size(sum(len(d) for d in layers))
    assert f": 0 uploaded (0 B), 2 mounted ({total}), 0 already there" in said, said

    manifest = inspect(f"{registry.host}/team/models:mine")  # skopeo reads what the mount made
    assert sorted(layer["digest"] for layer in manifest["layers"]) == sorted(
        f"sha256:{sha256(d)}" for d in layers
    )
    pulled = oras.client.OrasClient(insecure=True).pull(
        target=f"{registry.host}/team/models:mine", outdir=str(tmp_path / "oras")
    )
    assert sorted(Path(p).read_bytes() for p in pulled) == sorted(layers)


@pytest.mark.parametrize("may_pull", [True, False], ids=["source-pullable", "source-refused"])
def test_under_token_auth_a_mount_asks_pull_and_push_in_one_token_and_a_refused_source_is_uploaded(
    tokened: RegistryServer,
    tokens: TokenService,
    may_pull: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "login", tokened.host, PASSWORD)))
    case = "pullable" if may_pull else "refused"
    source, target = f"ai/{case}", f"team/{case}"
    layers = published_model(tokened, source, tmp_path / "made")
    folder = project(tmp_path / "ci", mine={"oci": f"{tokened.host}/{source}:v1"})
    ok(cli(folder, "sync"))
    tokens.log.clear()
    if not may_pull:
        tokens.refused.add(source)
    try:
        pushed = json.loads(ok(cli(folder, "push", tokened.url(target), "--json")).stdout)
    finally:
        tokens.refused.discard(source)

    digests = sorted(sha256(d) for d in layers)
    moved = "mounted" if may_pull else "uploaded"
    assert sorted(b["sha256"] for b in pushed[moved]) == digests
    assert pushed["bytes"] == (0 if may_pull else sum(len(d) for d in layers))
    assert [scopes(a.scopes) for a in tokens.asked()] == [
        {f"repository:{target}:pull"},
        {f"repository:{target}:pull", f"repository:{target}:push", f"repository:{source}:pull"},
    ], "the ping's token, then one for both repositories, as the mount's challenge named them"
    pulled = oras.client.OrasClient(hostname=tokened.host, insecure=True)
    pulled.login(hostname=tokened.host, username=USER, password=PASSWORD, tls_verify=False)
    files = pulled.pull(target=f"{tokened.host}/{target}:mine", outdir=str(tmp_path / "oras"))
    assert sorted(Path(p).read_bytes() for p in files) == sorted(layers)
