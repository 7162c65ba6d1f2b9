"""A push to a registry and a sync from it, each killed (SIGKILL) midway, then run again: the CLI
in real processes, paced through a TCP proxy (``s3kit.Meter``) in front of a real
``docker-registry`` so that each takes long enough to stop, and counted there. Marker ``registry``.
"""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

import httpx2
import pytest
from helpers import cli, start, wait_for
from registrykit import RegistryServer
from s3kit import Meter
from test_fleet import host, killed_at_60_percent_then_rerun, ok, project_with_remote

from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.store import Store

pytestmark = pytest.mark.registry


def held(registry: RegistryServer, repository: str, digest: str) -> bool:
    url = f"http://{registry.host}/v2/{repository}/blobs/{digest}"
    return httpx2.head(url, trust_env=False).status_code == 200


def tags_naming_missing_blobs(registry: RegistryServer, repository: str) -> dict[str, list[str]]:
    """Each tag of the repository with the blobs its manifest names that the registry lacks."""
    origin = f"http://{registry.host}/v2/{repository}"
    listed = httpx2.get(f"{origin}/tags/list", trust_env=False)
    tags = (listed.json().get("tags") or []) if listed.status_code == 200 else []
    missing = {}
    for tag in tags:
        manifest = httpx2.get(
            f"{origin}/manifests/{tag}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
            trust_env=False,
        ).json()
        named = [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]
        missing[tag] = [digest for digest in named if not held(registry, repository, digest)]
    return missing


def test_a_push_killed_midway_publishes_no_tag_and_a_rerun_sends_only_about_the_rest(
    registry: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two 100 MB blobs, each sent as a 64 MiB PATCH and a closing PUT, one at a time. Killed
    past 60% (the first blob in, the second partway), a rerun sends the second blob whole again
    (an upload session is not resumed): about 1.1 times the bytes in all; 2 if it sent all again."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    files = project_with_remote(folder, mirror_root, tmp_path, padding=100_000_000)
    ok(cli(folder, "sync"))
    digests = ["sha256:" + hashlib.sha256(data).hexdigest() for data in files.values()]
    total = sum(len(data) for data in files.values())

    with Meter(f"http://{registry.host}", rate=40e6) as meter:
        url = f"oci://{meter.url.removeprefix('http://')}/team/killed"
        first, _ = start(folder, "push", url, "--jobs", "1")
        try:
            wait_for(lambda: meter.received > 0.6 * total, "60% of the bytes sent", timeout=60)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)

        assert tags_naming_missing_blobs(registry, "team/killed") == {}, "no tag published yet"
        assert not all(held(registry, "team/killed", d) for d in digests), "killed before the end"

        meter.rate = None
        ok(cli(folder, "push", url, timeout=120))
        ratio = meter.received / total

    published = tags_naming_missing_blobs(registry, "team/killed")
    assert {"chat", "embed"} <= set(published)
    assert all(missing == [] for missing in published.values()), published
    assert all(held(registry, "team/killed", d) for d in digests)
    assert ratio < 1.5, f"{ratio:.2f} times the blobs' bytes sent over both runs"


def test_a_sync_from_the_registry_killed_midway_resumes_and_the_registry_serves_the_blob_about_once(
    registry: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed with 60% checkpointed, a rerun from byte 0 would bring what the registry served to
    1.6 times the blob: the rerun resumes from the checkpoint (ranged GETs by digest)."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    folder = tmp_path / "ci"
    data = project_with_remote(folder, mirror_root, tmp_path, padding=40_000_000)["chat-Q4_K_M.gguf"]
    digest = hashlib.sha256(data).hexdigest()
    ok(cli(folder, "sync", "--only", "chat"))
    ok(cli(folder, "push", registry.url("team/resumed"), "--only", "chat"))
    deployed = host(tmp_path, folder, monkeypatch)
    store = Store(tmp_path / "host-store")

    with Meter(f"http://{registry.host}", rate=16e6) as meter:
        url = f"oci://{meter.url.removeprefix('http://')}/team/resumed"
        syncing = ("sync", "--frozen", "--only", "chat", "--from", url, "--no-hub")
        killed_at_60_percent_then_rerun(deployed, store, digest, len(data), syncing, meter)
        served = meter.served

    assert store.blob_path(digest).read_bytes() == data
    assert len(data) <= served <= 1.5 * len(data), f"{served / len(data):.2f} times the blob served"
