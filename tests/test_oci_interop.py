"""What ``push oci://`` publishes, read by clients nobody here wrote: ``skopeo copy`` (Debian's
skopeo) copies each model artifact to another repository and to an OCI layout folder, and the
``oras`` Python SDK pulls it file by file; every byte equals the store's blob. Marker ``registry``.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import oras.client  # type: ignore[import-untyped]  # the SDK ships no types
import pytest
from helpers import blob, cli
from registrykit import RegistryServer, inspect
from test_fleet import NAMES, ok
from test_remote_oci import synced_project

from alex_models.lock import loads
from alex_models.mirror import MirrorRoot, MirrorServer

pytestmark = pytest.mark.registry


def skopeo_copy(source: str, destination: str) -> None:
    run = subprocess.run(
        ["skopeo", "copy", "--src-tls-verify=false", "--dest-tls-verify=false", source, destination],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr


def test_skopeo_copies_what_we_push_and_oras_pulls_it_file_by_file_byte_for_byte(
    registry: RegistryServer,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = registry.url("team/interop")
    folder, files = synced_project(tmp_path, mirror_root, mirror, monkeypatch, url)
    pushed = json.loads(ok(cli(folder, "push", "--json")).stdout)
    lock = loads((folder / "models.lock").read_text(encoding="utf-8"))

    for name, reference in zip(NAMES, pushed["artifacts"], strict=True):
        source = f"docker://{registry.host}/team/interop:{name}"
        digest = reference.split("@", 1)[1]
        skopeo_copy(source, f"docker://{registry.host}/team/copied:{name}")
        copied = inspect(f"{registry.host}/team/copied:{name}")
        raw = json.dumps(copied, separators=(",", ":")).encode()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest, "copied unchanged, same digest"

        layout = tmp_path / "layout"
        skopeo_copy(source, f"oci:{layout}:{name}")
        index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
        assert digest in [m["digest"] for m in index["manifests"]]

        pulled = oras.client.OrasClient(insecure=True).pull(
            target=f"{registry.host}/team/interop:{name}", outdir=str(tmp_path / "oras" / name)
        )
        entry = lock.models[name]
        assert sorted(Path(p).name for p in pulled) == sorted(f.path for f in entry.files)
        for file in entry.files:
            expected = blob(file.sha256).read_bytes()  # the store's blob, verified by sync
            assert expected == files[file.path]
            assert (layout / "blobs" / "sha256" / file.sha256).read_bytes() == expected
            assert (tmp_path / "oras" / name / file.path).read_bytes() == expected
