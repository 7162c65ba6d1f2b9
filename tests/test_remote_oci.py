"""An OCI registry as a remote and a source, against a real ``docker-registry`` (distribution 2.8)
on loopback: push publishes ModelPack artifacts that skopeo reads, a host syncs from the registry
and nothing from the Hub, Basic auth from a docker config file or a credential helper. Behind a
gateway (``gatewaykit``): the anonymous Bearer token flow, blobs redirected to a storage origin,
429s and a ``Range`` ignored. Marker ``registry``: ``.ci/run`` installs the registry and runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from gatewaykit import Gateway
from helpers import cli, since_settled
from registrykit import PASSWORD, USER, RegistryServer, docker_config, inspect
from test_fleet import NAMES, host, ok, project_with_remote

from alex_models._units import MiB
from alex_models.download import Downloader, DownloadOptions, FileJob
from alex_models.lock import loads
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.oci.auth import Login, login_for
from alex_models.oci.modelpack import MODEL_ARTIFACT, MODEL_CONFIG, WEIGHT_RAW
from alex_models.remotes.oci import OciRemote
from alex_models.store import Store

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """A registry that wants Basic auth (htpasswd): the user ``USER`` with ``PASSWORD``."""
    server = RegistryServer(tmp_path_factory.mktemp("guarded"), htpasswd=True).start()
    try:
        yield server
    finally:
        server.stop()


def synced_project(
    tmp_path: Path,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    monkeypatch: pytest.MonkeyPatch,
    remote: str,
) -> tuple[Path, dict[str, bytes]]:
    """CI's project, synced from the mirror, whose models.yaml names ``remote`` as ``team``."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    files = project_with_remote(folder, mirror_root, tmp_path, remote=remote)
    ok(cli(folder, "sync"))
    return folder, files


def test_push_publishes_each_model_as_a_modelpack_artifact_that_skopeo_reads(
    registry: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = registry.url("team/published")
    folder, files = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)

    pushed = json.loads(ok(cli(folder, "push", "--json")).stdout)

    lock = loads((folder / "models.lock").read_text(encoding="utf-8"))
    assert pushed["remote"] == url
    assert pushed["bytes"] == sum(len(data) for data in files.values())
    assert [a.split("@")[0] for a in pushed["artifacts"]] == [
        f"{registry.host}/team/published:{n}" for n in NAMES
    ]
    for name, reference in zip(NAMES, pushed["artifacts"], strict=True):
        manifest = inspect(f"{registry.host}/team/published:{name}")
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        assert reference.endswith("@sha256:" + hashlib.sha256(raw).hexdigest()), "the tag is the reference"
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert manifest["artifactType"] == MODEL_ARTIFACT
        assert manifest["config"]["mediaType"] == MODEL_CONFIG
        entry = lock.models[name]
        assert [
            (
                layer["mediaType"],
                layer["digest"],
                layer["size"],
                layer["annotations"]["org.cncf.model.filepath"],
            )
            for layer in manifest["layers"]
        ] == [(WEIGHT_RAW, f"sha256:{f.sha256}", f.size, f.path) for f in entry.files]
        config = inspect(f"{registry.host}/team/published:{name}", "--config")
        assert config == {
            "descriptor": {"name": name, "revision": f"{entry.repo}@{entry.commit}"},
            "config": {"format": "gguf", "quantization": "Q4_K_M"},
            "modelfs": {"type": "layers", "diffIds": [f"sha256:{f.sha256}" for f in entry.files]},
        }
    lock_tag = pushed["lock"].replace("/", "-")
    (layer,) = inspect(f"{registry.host}/team/published:{lock_tag}")["layers"]
    assert layer["digest"] == "sha256:" + hashlib.sha256((folder / "models.lock").read_bytes()).hexdigest()

    uploads = registry.requests("POST", "/team/published/blobs/uploads/")
    again = json.loads(ok(cli(folder, "push", "--json")).stdout)

    assert again["uploaded"] == []
    assert len(again["skipped"]) == len(files)
    assert again["artifacts"] == pushed["artifacts"], "the same lock gives the same digests"
    assert registry.requests("POST", "/team/published/blobs/uploads/") == uploads, "no blob sent again"


def test_a_host_syncs_every_blob_from_the_registry_and_nothing_from_the_hub(
    registry: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = registry.url("team/models")
    folder, files = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    said = ok(cli(folder, "push")).stdout
    assert [line.split("@")[0] for line in said.splitlines() if line.startswith("published: ")] == [
        f"published: {registry.host}/team/models:{name}" for name in NAMES
    ]
    since_settled(mirror)
    mirror.clear_log()
    deployed = host(tmp_path, folder, monkeypatch)

    ok(cli(deployed, "sync", "--frozen", "--from", url, "--no-hub"))

    assert since_settled(mirror) == [], "nothing came from the mirror"
    ok(cli(deployed, "verify"))
    store = Store(tmp_path / "host-store")
    assert all(store.blob_path(hashlib.sha256(d).hexdigest()).read_bytes() == d for d in files.values())
    assert registry.requests("GET", "/team/models/blobs/sha256:") >= len(files)


def test_a_blob_missing_from_the_registry_is_named_with_the_remote_under_no_hub(
    registry: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = registry.url("team/partial")
    folder, files = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    ok(cli(folder, "push"))
    gone = hashlib.sha256(files["chat-Q4_K_M.gguf"]).hexdigest()
    registry.delete_blob("team/partial", gone)
    deployed = host(tmp_path, folder, monkeypatch)

    run = cli(deployed, "sync", "--frozen", "--from", url, "--no-hub")

    assert run.returncode == 1, run.stderr
    assert f"no remote tried ({url}) has org/chat/chat-Q4_K_M.gguf" in run.stderr
    assert not Store(tmp_path / "host-store").has_blob(gone, len(files["chat-Q4_K_M.gguf"]))
    status = cli(deployed, "status", "--remote", url, "--json")
    assert status.returncode == 1, status.stderr
    models = json.loads(status.stdout)["models"]
    assert {name: m["complete"] for name, m in models.items()} == {"chat": False, "embed": True}


def test_a_large_blob_goes_up_in_chunks_and_comes_back_in_ranges(
    registry: RegistryServer, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    data = hashlib.shake_256(b"oci").digest(5 * MiB + 123)
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / "blob"
    path.write_bytes(data)
    remote = OciRemote(registry.url("team/chunks"), chunk_size=2 * MiB)
    sent: list[int] = []
    try:
        assert remote.upload(sha, len(data), path, sent.append)
        assert sum(sent) == len(data)
        assert registry.requests("PATCH", "/team/chunks/blobs/uploads/") == 3, "2 + 2 + 1 MiB pieces"
        assert remote.sizes([sha, "0" * 64]) == {sha: len(data)}

        job = FileJob(sha, len(data), (remote.source(),), "team/chunks/blob")
        assert Downloader(store, client, options=DownloadOptions(min_segment=1 * MiB)).fetch(job)
    finally:
        remote.close()

    assert store.blob_path(sha).read_bytes() == data
    assert registry.requests("GET", f"/team/chunks/blobs/sha256:{sha}") > 1, "read in ranges, in parallel"


def test_wrong_basic_credentials_end_the_push_with_one_line_and_no_secret(
    guarded: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = guarded.url("team/models")
    folder, files = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    wrong = "wrong-secret-never-shown"
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "bad", guarded.host, wrong)))

    run = cli(folder, "push")

    assert run.returncode == 4, run.stderr
    assert run.stderr.splitlines()[0] == f"error: {guarded.host}: access denied (401)"
    assert wrong not in run.stderr + run.stdout
    assert guarded.requests("POST", "/team/models/blobs/uploads/") == 0

    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "good", guarded.host, PASSWORD)))
    pushed = json.loads(ok(cli(folder, "push", "--json")).stdout)
    assert len(pushed["uploaded"]) == len(files)
    assert PASSWORD not in json.dumps(pushed)


def credential_helper(folder: Path, host: str) -> Path:
    """``docker-credential-alextest``: it knows ``host``'s login and records each server it is
    asked about in ``asked``, beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "docker-credential-alextest"
    script.write_text(
        "#!/bin/sh\n"
        'read server\necho "$server" >> "$(dirname "$0")/asked"\n'
        f'if [ "$1" = get ] && [ "$server" = "{host}" ]; then\n'
        f'  printf \'{{"ServerURL":"%s","Username":"{USER}","Secret":"{PASSWORD}"}}\' "$server"\n'
        "else\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return folder


def test_a_credential_helper_the_docker_config_names_gives_the_login(
    guarded: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = guarded.url("team/helped")
    folder, files = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    helpers = credential_helper(tmp_path / "bin", guarded.host)
    monkeypatch.setenv("PATH", f"{helpers}{os.pathsep}{os.environ['PATH']}")
    config = docker_config(tmp_path / "docker", guarded.host, "stale-entry-never-used")
    document = json.loads((config / "config.json").read_text(encoding="utf-8"))
    document["credHelpers"] = {guarded.host: "alextest"}  # docker asks it first, before auths
    (config / "config.json").write_text(json.dumps(document), encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))

    pushed = json.loads(ok(cli(folder, "push", "--json")).stdout)

    assert len(pushed["uploaded"]) == len(files)
    assert (helpers / "asked").read_text(encoding="utf-8").split() == [guarded.host]

    # Docker Desktop's way: an empty auths entry, and the secret in the credsStore helper.
    (config / "config.json").write_text(
        json.dumps({"auths": {guarded.host: {}}, "credsStore": "alextest"}), encoding="utf-8"
    )
    assert login_for(guarded.host) == Login(USER, PASSWORD)
    assert login_for("other.example:5000") is None, "the helper has none: anonymous, as docker goes on"


def test_through_a_bearer_gateway_tokens_are_asked_per_scope_and_storage_gets_no_authorization(
    registry: RegistryServer, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    data = hashlib.shake_256(b"gated").digest(3 * MiB + 7)
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / "blob"
    path.write_bytes(data)
    with Gateway(registry.host, bearer=True, redirect=True) as gateway:
        remote = OciRemote(f"oci://{gateway.host}/team/gated")
        try:
            assert remote.upload(sha, len(data), path, lambda sent: None)
            job = FileJob(sha, len(data), (remote.source(),), "team/gated/blob")
            assert Downloader(store, client, options=DownloadOptions(min_segment=1 * MiB)).fetch(job)
        finally:
            remote.close()

    assert store.blob_path(sha).read_bytes() == data
    scopes = [parse_qs(urlsplit(s.path).query)["scope"] for s in gateway.seen("api", "GET", "/token")]
    assert scopes == [["repository:team/gated:pull"], ["repository:team/gated:pull,push"]], (
        "the ping's token, then the one the upload's challenge asked for; none per request"
    )
    stored = gateway.seen("storage", "GET", sha)
    assert stored, "blob GETs were redirected to the storage origin"
    assert all(s.authorization is None for s in stored), "no Authorization sent to another origin"
    assert any(s.range for s in stored), "read in ranges"


def test_a_registry_that_throttles_and_ignores_range_still_serves_the_blob_whole(
    registry: RegistryServer, store: Store, client: httpx2.Client, tmp_path: Path
) -> None:
    data = hashlib.shake_256(b"plain").digest(3 * MiB + 11)
    sha = hashlib.sha256(data).hexdigest()
    path = tmp_path / "blob"
    path.write_bytes(data)
    direct = OciRemote(registry.url("team/plain"))
    try:
        assert direct.upload(sha, len(data), path, lambda sent: None)
    finally:
        direct.close()
    with Gateway(registry.host, ignore_range=True, throttle=2) as gateway:
        remote = OciRemote(f"oci://{gateway.host}/team/plain")
        try:
            job = FileJob(sha, len(data), (remote.source(),), "team/plain/blob")
            assert Downloader(store, client, options=DownloadOptions(min_segment=1 * MiB)).fetch(job)
        finally:
            remote.close()

    assert store.blob_path(sha).read_bytes() == data
    gets = gateway.seen("api", "GET", sha)
    assert [s.status for s in gets[:2]] == [429, 429], "throttled, then retried"
    assert any(s.range and s.status == 200 for s in gets), "a ranged GET answered with the whole blob"


def test_push_tags_each_model_by_the_tag_template_and_a_template_that_cannot_work_sends_nothing(
    registry: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = registry.url("team/tagged")
    folder, _ = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)

    refused = cli(folder, "push", "--tag", "{name}-{size}")
    elsewhere = cli(folder, "push", (tmp_path / "folder").as_uri(), "--tag", "{name}")

    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines()[0] == (
        "error: --tag '{name}-{size}' names size, which is not a field of a model"
    )
    assert registry.requests("POST", "/team/tagged/blobs/uploads/") == 0, "checked before any upload"
    assert elsewhere.returncode == 2, elsewhere.stderr
    assert "is not a registry" in elsewhere.stderr.splitlines()[0]
    assert not (tmp_path / "folder").exists()

    pushed = json.loads(ok(cli(folder, "push", "--tag", "{name}-{quant}", "--json")).stdout)

    assert [a.split("@")[0] for a in pushed["artifacts"]] == [
        f"{registry.host}/team/tagged:{name}-Q4_K_M" for name in NAMES
    ]
    for name, reference in zip(NAMES, pushed["artifacts"], strict=True):
        manifest = inspect(f"{registry.host}/team/tagged:{name}-Q4_K_M")
        raw = json.dumps(manifest, separators=(",", ":")).encode()
        assert reference.endswith("@sha256:" + hashlib.sha256(raw).hexdigest())
    listed = httpx2.get(f"http://{registry.host}/v2/team/tagged/tags/list", trust_env=False).json()
    assert not set(NAMES) & set(listed["tags"]), "no tag by the bare name"
