"""Token auth as a registry itself does it: ``docker-registry`` (distribution 2.8) configured with
``auth: token``, trusting the certificate of a token service on loopback (``tokenkit``) that
signs JWTs, checks Basic logins and gives anonymous pull tokens as Docker Hub does. The CLI pushes
and syncs through it; wrong or missing credentials end in one line (exit 4), the secret never shown.
Marker ``registry``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import blob, cli, listing, read_only
from registrykit import PASSWORD, USER, RegistryServer, docker_config
from test_fleet import host, ok
from test_remote_oci import synced_project
from tokenkit import TokenService

from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.store import Store

pytestmark = pytest.mark.registry


@pytest.fixture
def anonymous_pull(tokens: TokenService) -> Iterator[TokenService]:
    """The service as a test leaves it: anonymous pulls allowed again, its log emptied."""
    tokens.log.clear()
    yield tokens
    tokens.anonymous_pull = True


def test_ci_pushes_with_its_login_and_a_host_syncs_with_anonymous_pull_tokens(
    tokened: RegistryServer,
    anonymous_pull: TokenService,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = tokened.url("team/tokened")
    folder, files = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "login", tokened.host, PASSWORD)))

    pushed = json.loads(ok(cli(folder, "push", "--json")).stdout)

    assert len(pushed["uploaded"]) == len(files)
    assert [(a.scopes, a.login, a.status) for a in anonymous_pull.asked()] == [
        (("repository:team/tokened:pull",), True, 200),
        (("repository:team/tokened:pull,push",), True, 200),
    ], "the ping's token, then the push scope the first upload's challenge named; none per blob"
    assert PASSWORD not in json.dumps(pushed)

    anonymous_pull.log.clear()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-login"))
    deployed = host(tmp_path, folder, monkeypatch)
    ok(cli(deployed, "sync", "--frozen", "--from", url, "--no-hub"))

    store = Store(tmp_path / "host-store")
    assert all(store.blob_path(hashlib.sha256(d).hexdigest()).read_bytes() == d for d in files.values())
    assert [(a.scopes, a.login, a.status) for a in anonymous_pull.asked()] == [
        (("repository:team/tokened:pull",), False, 200)
    ], "one anonymous pull token for every blob"


@pytest.mark.parametrize("verbose", [(), ("-v",)], ids=["quiet", "verbose"])
def test_wrong_credentials_at_the_token_service_are_exit_4_in_one_line_with_no_secret(
    verbose: tuple[str, ...],
    tokened: RegistryServer,
    anonymous_pull: TokenService,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = tokened.url("team/refused")
    folder, _ = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    wrong = "wrong-token-secret-never-shown"
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "bad", tokened.host, wrong)))

    pushed = cli(folder, *verbose, "push")
    deployed = host(tmp_path, folder, monkeypatch)
    synced = cli(deployed, *verbose, "sync", "--frozen", "--from", url, "--no-hub")

    for run in (pushed, synced):
        assert run.returncode == 4, run.stderr
        assert f"error: {tokened.host}: access denied (401)" in run.stderr.splitlines()
        if not verbose:
            assert run.stderr.splitlines()[0] == f"error: {tokened.host}: access denied (401)"
        assert wrong not in run.stdout + run.stderr
        assert "d3Jvbmct" not in run.stderr, "nor its base64"
    assert {(a.login, a.status) for a in anonymous_pull.asked()} == {(True, 401)}
    assert tokened.requests("POST", "/team/refused/blobs/uploads/") == 0


def test_without_a_login_a_push_and_a_private_pull_are_refused_naming_how_to_log_in(
    tokened: RegistryServer,
    anonymous_pull: TokenService,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = tokened.url("team/private")
    folder, _ = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-login"))

    pushed = cli(folder, "push")

    assert pushed.returncode == 4, pushed.stderr
    errors = [line for line in pushed.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tokened.host}: access denied (401)"], "after the blob it tried"
    assert f"docker login {tokened.host}" in pushed.stderr
    assert [(a.scopes, a.login, a.status) for a in anonymous_pull.asked()] == [
        (("repository:team/private:pull",), False, 200),
        (("repository:team/private:pull,push",), False, 200),
    ], "a pull-only token for the push scope is asked once: the registry's insufficient_scope ends it"

    anonymous_pull.anonymous_pull = False  # a private repository: anonymous tokens grant nothing
    deployed = host(tmp_path, folder, monkeypatch)
    synced = cli(deployed, "sync", "--frozen", "--from", url, "--no-hub")

    assert synced.returncode == 4, synced.stderr
    assert synced.stderr.splitlines()[0] == f"error: {tokened.host}: access denied (401)"


@pytest.mark.posix("read-only mounts, as a pod's ConfigMap and Secret volumes are")
def test_an_init_container_syncs_frozen_from_a_mounted_lock_with_an_image_pull_secrets_login(
    tokened: RegistryServer,
    anonymous_pull: TokenService,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/guides/fleet.md's Kubernetes section as it runs: the lock alone in a read-only folder
    (a ConfigMap), the login as ``kubectl create secret docker-registry`` writes it, mounted as
    ``config.json`` where DOCKER_CONFIG points (read-only), a private repository, an empty store."""
    url = tokened.url("team/k8s")
    folder, files = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config(tmp_path / "login", tokened.host, PASSWORD)))
    ok(cli(folder, "push"))
    anonymous_pull.anonymous_pull = False  # only the login may pull
    lock = tmp_path / "config"
    lock.mkdir()
    (lock / "models.lock").write_bytes((folder / "models.lock").read_bytes())
    secret = tmp_path / "registry-login"
    secret.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    entry = {"username": USER, "password": PASSWORD, "auth": auth}
    (secret / "config.json").write_text(json.dumps({"auths": {tokened.host: entry}}), encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(secret))
    monkeypatch.setenv("ALEX_MODELS_HOME", str(tmp_path / "models"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a pod that reaches no Hub
    before = listing(lock)

    with read_only(lock), read_only(secret):
        run = cli(tmp_path, "sync", "--frozen", "--no-hub", "--from", url, "-f", str(lock / "models.yaml"))

    assert run.returncode == 0, run.stderr
    assert listing(lock) == before, "nothing written beside the lock"
    assert all(blob(hashlib.sha256(d).hexdigest()).read_bytes() == d for d in files.values())
    assert anonymous_pull.asked()[-1].login, "the pull token was asked with the secret's login"
