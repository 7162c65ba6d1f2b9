"""The CLI run as macOS's and Windows's Pythons would run it.

Each test runs real subprocesses (the CLI, and the mirror it downloads from) under a Python that
lacks what the named platform's CPython lacks and refuses what Windows refuses
(tests/platforms/simulated_platform.py says what is reproduced and what is not). The simulation
logs each refusal it made and each macOS F_FULLFSYNC, so a test also shows that the other
platform's path ran, not only that the command succeeded.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import (
    CLI,
    blob,
    cli,
    home,
    mirror_process,
    progress_done,
    sha256,
    start,
    wait_for,
    write_manifest,
)

from alex_models.mirror import MirrorRoot
from alex_models.tinymodels import write_tiny_gguf

# The simulation takes from a Linux Python what the others lack; on them, the rest of the suite runs
# the real thing.
pytestmark = pytest.mark.linux("a Linux Python to simulate macOS's and Windows's from")
SIMULATION = Path(__file__).parent / "platforms"
SMALL, BIG = "small-Q4_K_M.gguf", "big-Q4_K_M.gguf"


@dataclass(frozen=True)
class Simulated:
    """The platform the subprocesses of a test run as, and what the simulation logged."""

    name: str
    log_path: Path

    def events(self) -> Counter[str]:
        if not self.log_path.exists():
            return Counter()
        return Counter(self.log_path.read_text(encoding="utf-8").splitlines())


@pytest.fixture(params=["macos", "windows"])
def platform(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Simulated:
    """Every subprocess this test starts runs as ``request.param``'s Python (or, with "exfat", on a
    filesystem without hard links or symlinks)."""
    python_path = [str(SIMULATION), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(python_path))
    monkeypatch.setenv("ALEX_MODELS_SIMULATE", request.param)
    log_path = tmp_path / "simulated.log"
    monkeypatch.setenv("ALEX_MODELS_SIMULATE_LOG", str(log_path))
    return Simulated(request.param, log_path)


@dataclass(frozen=True)
class Served:
    root: MirrorRoot
    files: dict[str, bytes]


@pytest.fixture
def served(mirror_root: MirrorRoot, tmp_path: Path) -> Served:
    small = write_tiny_gguf(tmp_path / SMALL, context_length=1, padding=200_000)
    big = write_tiny_gguf(tmp_path / BIG, context_length=2, padding=6_000_000)
    mirror_root.commit("org/small", {SMALL: small})
    mirror_root.commit("org/big", {BIG: big})
    return Served(mirror_root, {"small": small.read_bytes(), "big": big.read_bytes()})


@pytest.fixture
def endpoint(served: Served, platform: Simulated, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The mirror in a subprocess of the simulated platform (Windows's has no sendfile), with a
    dropped connection and a 503 on the way."""
    process, url = mirror_process(
        [sys.executable, "-m", "alex_models.mirror", "--root", str(served.root.root), "--port", "0",
         "--quiet", "--fault", "drop-after=100KB,times=1,on=cdn", "--fault", "status=503,times=1,on=cdn",
         "--fault", "bandwidth=4MB,file=big-*"]
    )  # fmt: skip
    monkeypatch.setenv("HF_ENDPOINT", url)
    yield url
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)


def test_the_simulated_python_lacks_what_the_platform_lacks(platform: Simulated) -> None:
    probe = "import os; print(sorted(n for n in ('fdatasync','posix_fallocate','pread','pwrite','sendfile') if hasattr(os, n)))"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == ("['pread', 'pwrite', 'sendfile']" if platform.name == "macos" else "[]")


def test_demo_runs_and_removes_everything_it_made(platform: Simulated, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PATH": "/usr/bin:/bin"}  # no llama-server

    done = subprocess.run(
        [str(CLI), "demo"], env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout.splitlines()[-1].startswith(
        "done: the servers are stopped and the demo's files removed"
    )
    assert list(scratch.iterdir()) == []  # the store's read-only blob went too
    if platform.name == "macos":
        assert platform.events()["F_FULLFSYNC"] >= 2  # the checkpoint and the promotion
    else:
        assert platform.events()["read-only delete refused"] >= 1  # and then deleted anyway


def test_sync_through_faults_survives_sigkill_then_verify_and_gc(
    platform: Simulated, served: Served, endpoint: str, project: Path
) -> None:
    write_manifest(project, {name: {"repo": f"org/{name}", "quant": "Q4_K_M"} for name in ("small", "big")})
    digest = sha256(served.files["big"])
    record = home() / "tmp" / f"{digest}.json"

    first, stderr = start(project, "sync")
    try:
        wait_for(lambda: progress_done(record) >= 1_000_000 or first.poll() is not None, "a checkpoint")
        assert first.returncode is None, stderr.read_text()
    finally:
        first.kill()  # SIGKILL
        first.wait(timeout=10)
    kept = progress_done(record)
    resumed = cli(project, "sync", "--frozen", "--hf-cache", str(project / "hf-cache"))

    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at" in resumed.stderr
    assert kept > 0
    for data in served.files.values():
        assert blob(sha256(data)).read_bytes() == data
    snapshot = next((project / "hf-cache").glob(f"models--org--big/snapshots/*/{BIG}"))
    assert hashlib.sha256(snapshot.read_bytes()).hexdigest() == digest
    assert cli(project, "verify").returncode == 0

    # A damaged blob is found and removed (Windows: it is read-only, so cleared first).
    small_blob = blob(sha256(served.files["small"]))
    small_blob.chmod(0o644)
    small_blob.write_bytes(b"x" * len(served.files["small"]))
    small_blob.chmod(0o444)
    damaged = cli(project, "verify")
    assert damaged.returncode == 3, damaged.stderr
    assert not small_blob.exists()

    # Dropped from the manifest and the lock: gc removes its blob and its view.
    write_manifest(project, {"small": {"repo": "org/small", "quant": "Q4_K_M"}})
    assert cli(project, "lock").returncode == 0
    collected = cli(project, "gc", "--json")
    assert collected.returncode == 0, collected.stderr
    removed = json.loads(collected.stdout)["removed"]
    assert [entry["path"] for entry in removed["blobs"]] == [str(blob(digest))]
    assert len(removed["views"]) == 1
    assert not blob(digest).exists()
    events = platform.events()
    if platform.name == "macos":
        assert events["F_FULLFSYNC"] >= 3
    else:
        assert events["symlink refused"] >= 1  # the Hugging Face cache snapshot: a hard link instead
        assert events["directory open refused"] >= 1
        assert events["read-only delete refused"] >= 2  # the damaged blob, the collected one and its view
        assert events["sharing violation"] >= 3  # each new file held once: renamed into place after a wait


def test_pull_places_the_verified_file(
    platform: Simulated, served: Served, endpoint: str, tmp_path: Path
) -> None:
    placed = tmp_path / "placed"

    pulled = cli(tmp_path, "pull", "org/small", SMALL, "--dir", str(placed))

    assert pulled.returncode == 0, pulled.stderr
    assert (placed / SMALL).read_bytes() == served.files["small"]
    assert Path(pulled.stdout.strip()) == placed / SMALL


def test_push_to_a_folder_and_a_host_syncs_from_it_without_the_hub(
    platform: Simulated,
    served: Served,
    endpoint: str,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_manifest(project, {"small": {"repo": "org/small", "quant": "Q4_K_M"}})
    team = (tmp_path / "team").as_uri()
    assert cli(project, "sync").returncode == 0
    first, again = cli(project, "push", team, "--json"), cli(project, "push", team, "--json")
    assert first.returncode == 0, first.stderr
    assert len(json.loads(first.stdout)["uploaded"]) == 1
    assert json.loads(again.stdout)["uploaded"] == []  # already there: not sent again

    monkeypatch.setenv("ALEX_MODELS_HOME", str(tmp_path / "host-store"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the Hub is out of reach
    synced = cli(project, "sync", "--frozen", "--from", team, "--no-hub")

    assert synced.returncode == 0, synced.stderr
    small = served.files["small"]
    assert (
        tmp_path / "host-store" / "blobs" / "sha256" / sha256(small)[:2] / sha256(small)
    ).read_bytes() == small


@pytest.mark.parametrize("platform", ["exfat"], indirect=True)
def test_without_links_views_are_copies_and_sync_verify_push_gc_work(
    platform: Simulated, served: Served, endpoint: str, project: Path, tmp_path: Path
) -> None:
    write_manifest(project, {"small": {"repo": "org/small", "quant": "Q4_K_M"}})
    synced = cli(project, "sync", "--hf-cache", str(tmp_path / "hf-cache"))
    assert synced.returncode == 0, synced.stderr
    small = served.files["small"]
    stored = blob(sha256(small))
    view = next((home() / "llama.cpp").rglob(SMALL))
    assert view.read_bytes() == small
    assert view.stat().st_ino != stored.stat().st_ino  # a copy: the disk holds it twice
    assert next((tmp_path / "hf-cache").rglob(f"snapshots/*/{SMALL}")).read_bytes() == small
    status = cli(project, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert cli(project, "verify").returncode == 0
    view.write_bytes(b"x" * len(small))  # the copy is damaged; the blob is not
    damaged = cli(project, "verify")
    assert damaged.returncode == 3, damaged.stderr
    assert f"(its copy {view})" in damaged.stdout + damaged.stderr
    assert not view.exists()
    assert cli(project, "sync").returncode == 0
    assert view.read_bytes() == small
    pushed = cli(project, "push", (tmp_path / "team").as_uri(), "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert len(json.loads(pushed.stdout)["uploaded"]) == 1

    write_manifest(project, {})
    assert cli(project, "lock").returncode == 0
    collected = cli(project, "gc")
    assert collected.returncode == 0, collected.stderr
    assert not stored.exists()
    assert not view.exists()
    assert platform.events()["hard link refused"] >= 3  # the view, the cache's blob, the pushed blob
    assert platform.events()["symlink refused"] >= 2  # the view's second choice, the cache snapshot
