"""``outdated`` and ``lock --dry-run`` end to end, against the mirror server: a branch and a tag
move upstream after the lock, a repo vanishes, another goes gated, the endpoint goes down.

Neither command writes anything: every test checks the lock's bytes afterwards.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import cli, free_port, write_manifest

from alex_models import api
from alex_models.errors import UserError
from alex_models.lockdiff import lock_changes
from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord
from alex_models.resolve import ResolveError

PLAIN = "org/plain"
OTHER = "org/other"
GATED = "org/gated"
Q4_V1 = b"GGUF Q4_K_M, first\n" * 100  # 1.9 KB
Q4_V2 = b"GGUF Q4_K_M, second one\n" * 100  # 2.4 KB
Q8 = b"GGUF Q8_0\n" * 50  # 500 B
Q5 = b"GGUF Q5_K_M\n" * 250  # 3 KB
OTHER_Q4 = b"GGUF other Q4_K_M\n" * 40  # 720 B
GATED_Q4 = b"GGUF gated Q4_K_M\n" * 40
HARNESSES = "/api/agent-harnesses"  # huggingface_hub's own telemetry lookup, not ours


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Commits:
    """What the ``upstream`` fixture committed: org/plain's first commit (main and tag v1), org/other's."""

    plain: str
    other: str


@pytest.fixture
def upstream(mirror_root: MirrorRoot, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch) -> Commits:
    """org/plain (main, tag v1), org/other and org/gated on the mirror, HF_ENDPOINT pointing at it."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    first = mirror_root.commit(PLAIN, {"m-Q4_K_M.gguf": Q4_V1, "m-Q8_0.gguf": Q8}, message="v1")
    mirror_root.set_tag(PLAIN, "v1", first)
    other = mirror_root.commit(OTHER, {"o-Q4_K_M.gguf": OTHER_Q4})
    mirror_root.commit(GATED, {"g-Q4_K_M.gguf": GATED_Q4})
    return Commits(first, other)


def move_plain(mirror_root: MirrorRoot) -> str:
    """main and tag v1 of org/plain to a commit where Q4_K_M has new bytes, Q5_K_M appeared and
    Q8_0 is gone."""
    moved = mirror_root.commit(
        PLAIN, {"m-Q4_K_M.gguf": Q4_V2, "m-Q5_K_M.gguf": Q5}, delete=["m-Q8_0.gguf"], message="v2"
    )
    mirror_root.set_tag(PLAIN, "v1", moved)
    return moved


def ours(log: list[RequestRecord]) -> list[tuple[str, str]]:
    """The requests alex-models made, sorted (huggingface_hub's own lookups aside)."""
    return sorted((r.method, r.path) for r in log if r.path != HARNESSES)


def test_outdated_reports_each_model_by_how_it_is_pinned_and_writes_nothing(
    upstream: Commits, mirror_root: MirrorRoot, mirror: MirrorServer, project: Path
) -> None:
    manifest = write_manifest(
        project,
        {
            "globbed": {"repo": PLAIN, "files": ["*.gguf"]},
            "q8": {"repo": PLAIN, "quant": "Q8_0"},
            "tagged": {"repo": PLAIN, "revision": "v1", "quant": "Q4_K_M"},
            "pinned": {"repo": PLAIN, "revision": upstream.plain, "quant": "Q4_K_M"},
            "other": {"repo": OTHER, "quant": "Q4_K_M"},
            "notes": {"url": f"{mirror.url}/{OTHER}/resolve/main/o-Q4_K_M.gguf"},
        },
    )
    api.lock(manifest)
    before = (project / "models.lock").read_bytes()
    moved = move_plain(mirror_root)

    result = api.outdated(manifest_path=manifest)

    found = {m.name: m for m in result.models}
    assert {name: m.status for name, m in found.items()} == {
        "globbed": "outdated",
        "notes": "unchecked",
        "other": "current",
        "pinned": "pinned",
        "q8": "error",  # its quant is gone from main; its siblings on main are still reported
        "tagged": "outdated",
    }
    assert (result.outdated, result.failed) == (("globbed", "tagged"), ("q8",))
    globbed = found["globbed"]
    assert (globbed.locked.commit, globbed.current_commit) == (upstream.plain, moved)
    assert globbed.change is not None
    assert [(f.path, f.kind, f.after and f.after.sha256) for f in globbed.change.files] == [
        ("m-Q4_K_M.gguf", "changed", sha(Q4_V2)),
        ("m-Q5_K_M.gguf", "added", sha(Q5)),
        ("m-Q8_0.gguf", "removed", None),
    ]
    assert found["tagged"].current_commit == moved
    assert isinstance(found["q8"].problem, ResolveError)
    assert "no GGUF with quant label Q8_0" in found["q8"].problem.message
    assert found["other"].change is None
    assert (project / "models.lock").read_bytes() == before
    assert sorted(p.name for p in project.iterdir()) == ["models.lock", "models.yaml"]


def test_outdated_asks_once_per_repo_and_revision_and_nothing_for_pins(
    upstream: Commits, mirror: MirrorServer, project: Path
) -> None:
    manifest = write_manifest(
        project,
        {
            "q4": {"repo": PLAIN, "quant": "Q4_K_M"},
            "q8": {"repo": PLAIN, "quant": "Q8_0"},
            "tagged": {"repo": PLAIN, "revision": "v1", "quant": "Q4_K_M"},
            "pinned": {"repo": PLAIN, "revision": upstream.plain, "quant": "Q4_K_M"},
            "other": {"repo": OTHER, "quant": "Q4_K_M"},
            "notes": {"url": f"{mirror.url}/{OTHER}/resolve/main/o-Q4_K_M.gguf"},
        },
    )
    api.lock(manifest)
    mirror.wait_log(lambda log: len(ours(log)) >= 5)
    mirror.clear_log()

    api.outdated(manifest_path=manifest)

    mirror.wait_log(lambda log: len(ours(log)) >= 3)
    assert ours(mirror.log) == [
        ("GET", f"/api/models/{OTHER}/revision/main"),
        ("GET", f"/api/models/{PLAIN}/revision/main"),
        ("GET", f"/api/models/{PLAIN}/revision/v1"),
    ]


def test_cli_reports_a_vanished_repo_and_a_gated_one_on_their_models(
    upstream: Commits, mirror: MirrorServer, mirror_root: MirrorRoot, project: Path
) -> None:
    manifest = write_manifest(
        project,
        {
            "plain": {"repo": PLAIN, "quant": "Q4_K_M"},
            "other": {"repo": OTHER, "quant": "Q4_K_M"},
            "gated": {"repo": GATED, "quant": "Q4_K_M"},
        },
    )
    api.lock(manifest)
    before = (project / "models.lock").read_bytes()
    shutil.rmtree(mirror_root.repo_dir(OTHER))
    mirror_root.create_repo(GATED, gated="auto", tokens=["hf_granted"])

    result = cli(project, "outdated", "--exit-code")

    assert (result.returncode, result.stderr) == (1, "")
    assert result.stdout.splitlines() == [
        f"! gated: {GATED} is a gated repo and no token is set",
        f"    hint: accept its terms at {mirror.url}/{GATED}, then set HF_TOKEN (or run 'hf auth login')",
        f"! other: repo {OTHER} not found at {mirror.url}, or it is private and no token is set",
        "    hint: check the repo id; for a private repo set HF_TOKEN (or run 'hf auth login')",
        f"= plain: {PLAIN}@main {upstream.plain[:12]}, up to date",
        "2 of 3 cannot be resolved any more (marked !).",
    ]
    assert (project / "models.lock").read_bytes() == before


def test_outdated_of_a_model_not_in_the_lock_names_the_locked_ones(upstream: Commits, project: Path) -> None:
    manifest = write_manifest(project, {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}})
    api.lock(manifest)

    with pytest.raises(UserError) as caught:
        api.outdated(["plian"], manifest)

    assert "no model named plian" in caught.value.message
    assert caught.value.hint == "locked models: plain"


def test_dry_run_reports_exactly_what_upgrade_then_writes(
    upstream: Commits, mirror_root: MirrorRoot, project: Path
) -> None:
    manifest = write_manifest(
        project, {"plain": {"repo": PLAIN, "files": ["*.gguf"]}, "other": {"repo": OTHER, "quant": "Q4_K_M"}}
    )
    api.lock(manifest)
    before_bytes = (project / "models.lock").read_bytes()
    before = api.read_lock(project / "models.lock")
    move_plain(mirror_root)

    dry = api.lock(manifest, upgrade=True, dry_run=True)

    assert (project / "models.lock").read_bytes() == before_bytes
    assert dry.written is False
    written = api.lock(manifest, upgrade=True)
    after = api.read_lock(project / "models.lock")
    assert after is not None
    assert written.written
    assert dry.changes == written.changes == tuple(lock_changes(before, after))
    assert [c.name for c in dry.changes] == ["plain"]


# -- the command line ------------------------------------------------------------------------------


def test_cli_outdated_exit_code_text_and_json_then_current_after_upgrade(
    upstream: Commits, mirror_root: MirrorRoot, project: Path
) -> None:
    write_manifest(
        project,
        {
            "plain": {"repo": PLAIN, "files": ["*.gguf"]},
            "pinned": {"repo": PLAIN, "revision": upstream.plain, "quant": "Q8_0"},
        },
    )
    api.lock(project / "models.yaml")
    before = (project / "models.lock").read_bytes()
    moved = move_plain(mirror_root)

    text = cli(project, "outdated", "--exit-code")
    as_json = cli(project, "outdated", "--json")

    assert text.returncode == 1, text.stderr
    assert text.stdout.splitlines() == [
        f"= pinned: {PLAIN} pinned to commit {upstream.plain[:12]}, which cannot move",
        f"~ plain: {PLAIN}@main {upstream.plain[:12]} -> {moved[:12]}",
        "    ~ m-Q4_K_M.gguf: 1.9 KB -> 2.4 KB",
        "    + m-Q5_K_M.gguf: 3 KB",
        "    - m-Q8_0.gguf: 500 B",
        "1 of 2 outdated: 'alex-models lock --upgrade' takes the new commits (or --upgrade-model NAME, one model).",
    ]
    assert as_json.returncode == 0, as_json.stderr  # without --exit-code, outdated is not a failure
    payload = json.loads(as_json.stdout)
    assert (payload["kind"], payload["outdated"], payload["failed"]) == ("outdated", ["plain"], [])
    plain = next(m for m in payload["models"] if m["name"] == "plain")
    assert (plain["status"], plain["locked_commit"], plain["current_commit"]) == (
        "outdated",
        upstream.plain,
        moved,
    )
    assert [(f["path"], f["change"]) for f in plain["files"]] == [
        ("m-Q4_K_M.gguf", "changed"),
        ("m-Q5_K_M.gguf", "added"),
        ("m-Q8_0.gguf", "removed"),
    ]
    assert plain["files"][0]["after"] == {"role": "model", "size": len(Q4_V2), "sha256": sha(Q4_V2)}
    assert (project / "models.lock").read_bytes() == before

    api.lock(project / "models.yaml", upgrade=True)
    again = cli(project, "outdated", "--exit-code")
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "Nothing outdated."


def test_cli_outdated_against_an_endpoint_that_is_down_exits_4_naming_the_host(
    upstream: Commits, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_manifest(project, {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}})
    api.lock(project / "models.yaml")
    before = (project / "models.lock").read_bytes()
    down = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", f"http://{down}")

    result = cli(project, "outdated", "--exit-code")

    assert result.returncode == 4, result.stderr
    assert f"error: cannot reach http://{down} for {PLAIN}" in result.stderr
    assert "Traceback" not in result.stderr
    assert (project / "models.lock").read_bytes() == before


def test_cli_lock_dry_run_prints_the_change_model_by_model_and_writes_nothing(
    upstream: Commits, mirror_root: MirrorRoot, project: Path
) -> None:
    write_manifest(
        project, {"plain": {"repo": PLAIN, "files": ["*.gguf"]}, "other": {"repo": OTHER, "quant": "Q4_K_M"}}
    )
    api.lock(project / "models.yaml")
    before = (project / "models.lock").read_bytes()
    moved = move_plain(mirror_root)
    # An edit to the manifest is a change without --upgrade; a moved branch needs --upgrade.
    write_manifest(
        project, {"plain": {"repo": PLAIN, "files": ["*.gguf"]}, "other2": {"repo": OTHER, "quant": "Q4_K_M"}}
    )

    plain_run = cli(project, "lock", "--dry-run")
    upgrade_run = cli(project, "lock", "--upgrade", "--dry-run", "--json")
    both = cli(project, "lock", "--check", "--dry-run")

    assert plain_run.returncode == 0, plain_run.stderr
    other_sum = f"1 file, {len(OTHER_Q4)} B"
    assert plain_run.stdout.splitlines() == [
        "models.lock would change (nothing written):",
        f"- other: {OTHER}@main {upstream.other[:12]}, {other_sum}",
        f"    - o-Q4_K_M.gguf: {len(OTHER_Q4)} B",
        f"+ other2: {OTHER}@main {upstream.other[:12]}, {other_sum}",
        f"    + o-Q4_K_M.gguf: {len(OTHER_Q4)} B",
    ]
    assert upgrade_run.returncode == 0, upgrade_run.stderr
    changes = json.loads(upgrade_run.stdout)["changes"]
    assert [(c["name"], c["change"]) for c in changes] == [
        ("other", "removed"),
        ("other2", "added"),
        ("plain", "changed"),
    ]
    assert (changes[2]["before"]["commit"], changes[2]["after"]["commit"]) == (upstream.plain, moved)
    assert json.loads(upgrade_run.stdout)["written"] is False
    assert both.returncode == 2
    assert "--check and --dry-run do not go together" in both.stderr
    assert (project / "models.lock").read_bytes() == before
