"""What the store commands say about a store that is not as ``sync`` leaves it: read-only (a
pre-synced shared volume), or holding a blob whose views a stopped sync never made; and which
store a project uses. The installed CLI, the mirror server as the Hub, real mounts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import blob, cli, home, listing, read_only, write_manifest

from alex_models._platform import remove
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

REPO, FILE, OTHER = "org/tiny", "tiny-Q4_K_M.gguf", "other-Q4_K_M.gguf"
TARGET = "llama-server.env"
VIEWS_MISSING = "hint: views missing; run 'alex-models sync' or 'alex-models status --fix'"


@pytest.fixture
def synced(
    mirror_root: MirrorRoot, mirror: MirrorServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """``project`` with one model synced into the store, and an emit target beside it; the view."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    tiny = write_tiny_gguf(project.parent / "tiny.gguf", chat_template="{{ messages }}").read_bytes()
    other = write_tiny_gguf(project.parent / "other.gguf", context_length=1001).read_bytes()
    commit = mirror_root.commit(REPO, {FILE: tiny, OTHER: other})
    (project / "models.yaml").write_text(
        f"version: 1\nmodels:\n  tiny: {{repo: {REPO}, file: {FILE}}}\n"
        f"emit:\n  - {{format: llama-server-env, path: {TARGET}}}\n",
        encoding="utf-8",
    )
    assert cli(project, "sync", "--quiet").returncode == 0
    return home() / "llama.cpp" / "hf" / REPO / commit / FILE


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def one_error(result: subprocess.CompletedProcess[str], code: int) -> tuple[str, str]:
    """The error and hint lines, and nothing else on stderr (no traceback)."""
    assert result.returncode == code, result.stderr
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: "), result.stderr
    assert hint.startswith("hint: "), result.stderr
    return error, hint


# -- 2. a read-only store ------------------------------------------------------------------------------


@pytest.mark.posix("a read-only folder (Windows ignores a folder's read-only bit)")
def test_read_only_store_answers_status_verify_and_path_and_writes_nothing(
    synced: Path, project: Path
) -> None:
    before = listing(home())

    with read_only(home()):
        status = ok(cli(project, "status"))
        payload = json.loads(ok(cli(project, "status", "--json")))
        verified = ok(cli(project, "verify"))
        found = ok(cli(project, "path", "tiny"))

    assert status.splitlines()[1].split()[:2] == ["tiny", "synced"]
    assert (payload["kind"], payload["synced"], payload["models"]["tiny"]["sync_state"]) == (
        "status",
        True,
        "synced",
    )
    assert verified == "All 1 blob(s) match the lock.\n"
    assert found == f"{synced}\n"
    assert listing(home()) == before


@pytest.mark.posix("a read-only folder (Windows ignores a folder's read-only bit)")
@pytest.mark.slow
def test_complete_read_only_store_syncs_frozen_and_offline_emits_pulls_and_dry_runs_gc(
    synced: Path, project: Path
) -> None:
    (project / TARGET).unlink()
    before = listing(home())

    with read_only(home()):
        emitted = ok(cli(project, "emit", "llama-server"))
        dry = ok(cli(project, "gc", "--dry-run"))
        ok(cli(project, "sync", "--offline", "--quiet"))
        ok(cli(project, "sync", "--frozen", "--quiet"))
        pulled = ok(cli(project, "pull", REPO, FILE))

    assert f"-m {synced} " in emitted
    assert dry.startswith("Would free 0 B: 0 blob(s)")
    assert f"LLAMA_ARG_MODEL={synced}\n" in (project / TARGET).read_text(encoding="utf-8")  # in the project
    assert pulled == f"{synced}\n"
    assert listing(home()) == before


@pytest.mark.posix("a read-only folder (Windows ignores a folder's read-only bit)")
@pytest.mark.slow
def test_read_only_store_refuses_in_one_line_what_must_write(synced: Path, project: Path) -> None:
    sha = blob_of(synced)
    remove(synced)  # a view to make (read-only, as its blob: Windows deletes it only so)
    with read_only(home()):
        before = listing(home())
        fix = one_error(cli(project, "status", "--fix"), 1)
        sync = one_error(cli(project, "sync", "--offline"), 1)
        gc = one_error(cli(project, "gc"), 1)
        pull = one_error(cli(project, "pull", REPO, OTHER), 1)
        write_manifest(
            project, {"tiny": {"repo": REPO, "file": FILE}, "other": {"repo": REPO, "file": OTHER}}
        )
        download = one_error(cli(project, "sync"), 1)
        after = listing(home())
    blob(sha).chmod(0o644)
    blob(sha).write_bytes(b"corrupt")
    with read_only(home()):
        corrupt = one_error(cli(project, "verify"), 3)

    store = f"the store {home()} is read-only"
    assert fix[0] == f"error: {store}, and the view {synced} is missing"
    assert sync == fix
    assert (
        gc[0] == f"error: {store}, and gc needs to remove what no lock references (--dry-run only lists it)"
    )
    assert pull[0] == download[0] == f"error: {store}, and 1 locked file(s) are not in it yet"
    assert "point ALEX_MODELS_HOME (or 'store:' in models.yaml) at a writable folder" in fix[1]
    assert corrupt[0] == f"error: {REPO}/{FILE} no longer match the lock, and {store}, so they stay in it"
    assert after == before


def blob_of(view: Path) -> str:
    return next(p.name for p in (home() / "blobs" / "sha256").rglob("*") if p.samefile(view))


# -- 3. one meaning of "synced" --------------------------------------------------------------------------


def test_blob_without_its_view_is_not_synced_for_status_path_or_emit(synced: Path, project: Path) -> None:
    remove(synced)  # a sync stopped after storing the blob, before linking its view

    status = cli(project, "status")
    as_json = cli(project, "status", "--json")
    path = one_error(cli(project, "path", "tiny"), 1)
    emit = one_error(cli(project, "emit", "llama-server"), 1)

    assert (status.returncode, status.stderr) == (1, VIEWS_MISSING + "\n")
    assert status.stdout.splitlines()[1].split()[:2] == ["tiny", "partial"]
    assert status.stdout.splitlines()[1].endswith("views missing")
    assert as_json.returncode == 1
    model = json.loads(as_json.stdout)["models"]["tiny"]
    assert (model["state"], model["synced"], model["sync_state"], model["views_missing"]) == (
        "present",
        False,
        "partial",
        True,
    )
    assert path == (f"error: model 'tiny' is not synced into {home()}", VIEWS_MISSING)
    assert emit[0] == f"error: model 'tiny' is not synced into {home()}: its files are not in place"
    assert emit[1].endswith("or pass --allow-missing to emit the paths anyway")


@pytest.mark.slow
def test_emit_of_the_manifests_targets_fails_too_and_allow_missing_emits_anyway(
    synced: Path, project: Path
) -> None:
    remove(synced)

    targets = one_error(cli(project, "emit"), 1)
    allowed = cli(project, "emit", "llama-server", "--allow-missing")

    assert targets[0] == f"error: model 'tiny' is not synced into {home()}: its files are not in place"
    assert allowed.returncode == 0
    assert f"-m {synced} " in allowed.stdout
    assert allowed.stderr == f"warning: tiny: {synced} is not synced yet; run 'alex-models sync'\n"


def test_status_fix_or_the_next_sync_links_the_views_a_stopped_sync_left_out(
    synced: Path, project: Path
) -> None:
    sha = blob_of(synced)
    remove(synced)

    fixed = ok(cli(project, "status", "--fix"))

    assert fixed.splitlines()[1] == f"linked: {synced}"
    assert synced.samefile(blob(sha))

    remove(synced)
    ok(cli(project, "sync", "--offline", "--quiet"))

    assert synced.samefile(blob(sha))
    assert ok(cli(project, "path", "tiny")) == f"{synced}\n"


# -- 6. which store ---------------------------------------------------------------------------------------


def test_the_manifests_store_key_is_used_unless_alex_models_home_is_set(
    synced: Path, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = project / "models.yaml"
    manifest.write_text(manifest.read_text(encoding="utf-8") + "store: ~/here-store\n", encoding="utf-8")
    declared, store = Path.home() / "here-store", home()

    overridden = cli(project, "status")
    monkeypatch.delenv("ALEX_MODELS_HOME")
    own = cli(project, "status")

    assert overridden.returncode == 0
    assert overridden.stdout.splitlines()[0] == (
        f"store: {store} (from ALEX_MODELS_HOME; the manifest's store: {declared} is set aside)"
    )
    assert own.returncode == 1  # nothing is synced into the project's own store yet
    assert own.stdout.splitlines()[0] == f"store: {declared}"
    assert not declared.exists()  # status only reads
