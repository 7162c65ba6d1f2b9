"""The registry client's parts that need no registry: what an ``oci://`` URL means, the
credentials files the container tools write, the challenge a registry sends, and the artifact a
locked model becomes. The registry itself is in test_remote_oci.py (marker ``registry``)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import get_args

import pytest

from alex_models.errors import AlexModelsError, UsageError, UserError
from alex_models.lock import Role, loads
from alex_models.oci import Address
from alex_models.oci.auth import Login, challenge, login_for
from alex_models.oci.modelpack import (
    _ROLE_ORDER,
    ROLE,
    WEIGHT_CONFIG_RAW,
    WEIGHT_RAW,
    model_artifact,
    model_tags,
)
from alex_models.remotes import open_remote

SHA = "ab" * 32


def test_an_oci_url_is_https_but_on_loopback_or_when_it_says_oci_http() -> None:
    assert Address.parse("oci://ghcr.io/team/models") == Address("https", "ghcr.io", "team/models")
    assert Address.parse("oci://127.0.0.1:5000/m/").origin == "http://127.0.0.1:5000"
    assert Address.parse("oci://localhost:5000/m").scheme == "http"
    assert Address.parse("oci+http://registry.lan:5000/m").origin == "http://registry.lan:5000"
    assert Address.parse("oci+https://localhost:5443/m").origin == "https://localhost:5443"
    assert Address.parse("oci://ghcr.io/team/models").blob_url(SHA) == (
        f"https://ghcr.io/v2/team/models/blobs/sha256:{SHA}"
    )
    assert open_remote("oci://ghcr.io/team/models").url == "oci://ghcr.io/team/models"


@pytest.mark.parametrize(
    "url",
    ["oci://ghcr.io", "oci://ghcr.io/Team/models", "oci://ghcr.io/team/models:v1", "oci://u:p@ghcr.io/team"],
)
def test_an_oci_url_with_no_repository_a_tag_or_credentials_is_refused(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        Address.parse(url)
    assert caught.value.message == f"{url!r} is not a registry repository"


def test_a_challenge_is_read_with_quoted_and_bare_parameters() -> None:
    header = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:ai/x:pull"'
    assert challenge(header) == (
        "bearer",
        {
            "realm": "https://auth.docker.io/token",
            "service": "registry.docker.io",
            "scope": "repository:ai/x:pull",
        },
    )
    assert challenge('Basic realm="test"') == ("basic", {"realm": "test"})


def auths(path: Path, entries: dict[str, dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"auths": entries}), encoding="utf-8")
    return path


def basic(user: str, secret: str) -> str:
    return base64.b64encode(f"{user}:{secret}".encode()).decode()


def test_logins_come_from_registry_auth_file_then_docker_config_by_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    auths(tmp_path / "home" / ".docker" / "config.json", {"https://ghcr.io/v1/": {"auth": basic("me", "s1")}})
    assert login_for("ghcr.io") == Login("me", "s1")
    assert login_for("quay.io") is None

    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    auths(tmp_path / "docker" / "config.json", {"ghcr.io": {"username": "bot", "password": "s2"}})
    assert login_for("ghcr.io") == Login("bot", "s2")

    podman = auths(tmp_path / "auth.json", {"index.docker.io": {"auth": basic("hub", "s3")}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(podman))
    assert login_for("registry-1.docker.io") == Login("hub", "s3")
    assert "s3" not in repr(login_for("docker.io")), "a login's repr never shows its secret"
    assert login_for("ghcr.io") is None, "the first file that exists is the only one read"


def test_an_auth_entry_that_is_not_base64_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = auths(tmp_path / "auth.json", {"ghcr.io": {"auth": "not base64!"}})
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    with pytest.raises(UserError) as caught:
        login_for("ghcr.io")
    assert caught.value.message == f"{path}: the auth entry for ghcr.io is not base64 of user:password"


LOCK = f"""version: 1
models:
  vision:
    input: {{repo: org/vision, revision: main, quant: Q4_K_M, mmproj: mmproj-f16.gguf}}
    source: hf
    repo: org/vision
    revision: main
    commit: {"c" * 40}
    files:
    - {{path: mmproj-f16.gguf, role: mmproj, size: 5, sha256: {"a1" * 32}}}
    - {{path: v-Q4_K_M-00001-of-00002.gguf, role: model, size: 7, sha256: {"b2" * 32}}}
    - {{path: v-Q4_K_M-00002-of-00002.gguf, role: model, size: 9, sha256: {"c3" * 32}}}
"""


def test_a_models_weights_come_first_shards_in_order_and_each_layer_says_its_role() -> None:
    entry = loads(LOCK).models["vision"]

    artifact = model_artifact("vision", entry)

    manifest = json.loads(artifact.manifest)
    assert [
        (layer["mediaType"], layer["annotations"][ROLE], layer["size"]) for layer in manifest["layers"]
    ] == [
        (WEIGHT_RAW, "model", 7),
        (WEIGHT_RAW, "model", 9),
        (WEIGHT_RAW, "mmproj", 5),
    ]
    config = json.loads(artifact.config)
    assert config["modelfs"]["diffIds"] == [layer["digest"] for layer in manifest["layers"]]
    assert config["descriptor"]["revision"] == f"org/vision@{'c' * 40}"
    assert model_artifact("vision", entry) == artifact, "the same lock gives the same bytes"


def test_every_role_a_lock_can_hold_has_a_place_and_a_preset_is_no_weight() -> None:
    assert set(_ROLE_ORDER) == set(get_args(Role))
    text = LOCK.replace("role: mmproj", "role: mtp").replace(
        "    - {path: v-Q4_K_M-00002",
        f"    - {{path: preset.ini, role: preset, size: 3, sha256: {'d4' * 32}}}\n    - {{path: v-Q4_K_M-00002",
    )

    manifest = json.loads(model_artifact("vision", loads(text).models["vision"]).manifest)

    assert [(layer["mediaType"], layer["annotations"][ROLE]) for layer in manifest["layers"]] == [
        (WEIGHT_RAW, "model"),
        (WEIGHT_RAW, "model"),
        (WEIGHT_RAW, "mtp"),
        (WEIGHT_CONFIG_RAW, "preset"),
    ]


TWO = (
    LOCK
    + f"""  plain:
    input: {{url: https://example.org/plain.gguf}}
    source: url
    url: https://example.org/plain.gguf
    files:
    - {{path: plain.gguf, role: model, size: 4, sha256: {"e5" * 32}}}
"""
)


def test_a_tag_template_fills_in_each_models_fields_and_the_default_is_its_name() -> None:
    lock = loads(TWO)

    assert model_tags(lock, ["vision", "plain"]) == {"vision": "vision", "plain": "plain"}
    assert model_tags(lock, ["vision"], "{name}-{quant}") == {"vision": "vision-Q4_K_M"}
    assert model_tags(lock, ["vision"], "{revision}-{commit:.12}") == {"vision": "main-" + "c" * 12}


@pytest.mark.parametrize(
    ("template", "names", "kind", "message"),
    [
        (
            "{name}-{size}",
            ["vision"],
            UsageError,
            "--tag '{name}-{size}' names size, which is not a field of a model",
        ),
        ("{name", ["vision"], UsageError, "--tag '{name': expected '}' before end of string"),
        (
            "{name:d}",
            ["vision"],
            UsageError,
            "--tag '{name:d}': Unknown format code 'd' for object of type 'str'",
        ),
        ("{name}-{quant}", ["plain"], UserError, "model 'plain' has no quant for --tag '{name}-{quant}'"),
        (
            "-{name}",
            ["vision"],
            UserError,
            "--tag '-{name}' gives model 'vision' the tag '-vision', which a registry refuses",
        ),
        (
            "latest",
            ["vision", "plain"],
            UserError,
            "--tag 'latest' gives models 'vision' and 'plain' the same tag 'latest'",
        ),
    ],
)
def test_a_tag_template_that_cannot_tag_every_model_apart_is_refused_naming_why(
    template: str, names: list[str], kind: type[AlexModelsError], message: str
) -> None:
    with pytest.raises(kind) as caught:
        model_tags(loads(TWO), names, template)
    assert type(caught.value) is kind
    assert caught.value.message == message
