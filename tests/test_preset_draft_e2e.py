"""A repo preset that points at a draft repo (``hf-repo-draft = org/draft:Q8_0``), end to end on
the mirror: ``lock`` locks that repo's model beside the one that takes the preset, ``sync``
downloads it, and emit points llama-server at it in the store, never at a download at runtime."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import blob, home, write_manifest

from alex_models import api
from alex_models.errors import UserError
from alex_models.lock import loads
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

REPO, DRAFT = "org/big", "org/draft"
MODEL = "big-Q4_K_M.gguf"
DRAFT_Q4, DRAFT_Q8, DRAFT_F16 = "draft-Q4_K_M.gguf", "draft-Q8_0.gguf", "draft-F16.gguf"
PRESET = "[*]\ntemp = 0.6\n\n[org/big:Q4_K_M]\nhf-repo-draft = org/draft:q8_0\n"
ENTRY = {"repo": REPO, "quant": "Q4_K_M"}


@pytest.fixture
def served(mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch) -> MirrorServer:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    return mirror


def publish(root: MirrorRoot, tmp_path: Path, preset: str = PRESET, drafts: tuple[str, ...] = ()) -> str:
    """The big repo with ``preset``, and the draft repo with ``drafts`` (default: Q4_K_M and Q8_0)."""
    built = tmp_path / "built"
    built.mkdir(exist_ok=True)
    root.commit(REPO, {MODEL: write_tiny_gguf(built / MODEL), "preset.ini": preset.encode()})
    files = drafts or (DRAFT_Q4, DRAFT_Q8)
    return root.commit(
        DRAFT, {name: write_tiny_gguf(built / name, padding=n) for n, name in enumerate(files)}
    )


def test_a_preset_draft_repo_is_locked_synced_and_served_from_the_store(
    served: MirrorServer, mirror_root: MirrorRoot, project: Path, tmp_path: Path
) -> None:
    draft_commit = publish(mirror_root, tmp_path)
    manifest = write_manifest(project, {"big": ENTRY})
    api.lock(manifest)
    lock = loads((project / "models.lock").read_text(encoding="utf-8"))
    # Locked as that repo's model, pinned to a commit, at the tag llama.cpp would pick.
    draft = lock.models["big.draft"]
    assert draft.preset_of == "big"
    assert (draft.repo, draft.revision, draft.commit) == (DRAFT, "main", draft_commit)
    assert [(f.path, f.role) for f in draft.files] == [(DRAFT_Q8, "model")]
    built = (tmp_path / "built" / DRAFT_Q8).read_bytes()
    assert (draft.files[0].sha256, draft.files[0].size) == (hashlib.sha256(built).hexdigest(), len(built))
    assert not api.lock(manifest, check=True).stale  # the manifest does not list it, and need not
    assert not api.lock(manifest).written  # kept with its model

    api.sync(manifest, api.SyncOptions(only=("big",)))  # the draft goes where its model goes
    view = home() / "llama.cpp" / "hf" / DRAFT / draft_commit / DRAFT_Q8
    assert view.read_bytes() == blob(draft.files[0].sha256).read_bytes()

    argv = json.loads(api.emit("llama-server", manifest, as_json=True).text)["argv"]
    assert argv[argv.index("--model-draft") + 1] == str(view)
    assert not [arg for arg in argv if "hf-repo" in arg or "draft:" in arg]
    router = api.emit("router-preset", manifest).text
    assert f"model-draft = {view}" in router
    assert "hf-repo-draft" not in router

    # The manifest's own draft wins over the preset's.
    mirror_root.commit("org/mine", {"mine-Q4_K_M.gguf": write_tiny_gguf(tmp_path / "mine.gguf", padding=9)})
    both = write_manifest(
        project, {"big": {**ENTRY, "draft": "mine"}, "mine": {"repo": "org/mine", "quant": "Q4_K_M"}}
    )
    api.sync(both)
    argv = json.loads(api.emit("llama-server", both, only=("big",), as_json=True).text)["argv"]
    assert argv[argv.index("--model-draft") + 1].endswith("/mine-Q4_K_M.gguf")


def test_outdated_checks_a_preset_draft_with_its_model(
    served: MirrorServer, mirror_root: MirrorRoot, project: Path, tmp_path: Path
) -> None:
    publish(mirror_root, tmp_path)
    manifest = write_manifest(project, {"big": ENTRY})
    api.lock(manifest)
    mirror_root.commit(DRAFT, {DRAFT_Q8: write_tiny_gguf(tmp_path / "newer.gguf", padding=7)})
    found = api.outdated(manifest_path=manifest)
    assert {m.name: m.status for m in found.models} == {"big": "current", "big.draft": "outdated"}


@pytest.mark.parametrize(
    ("preset", "drafts", "words"),
    [
        pytest.param(
            "[*]\n\nhfd = org/draft\n",
            (DRAFT_F16, "draft-BF16.gguf"),
            [
                "org/big/preset.ini:3: draft org/draft at main",
                "2 models fit: draft-BF16.gguf, draft-F16.gguf",
            ],
            id="ambiguous",
        ),
        pytest.param(
            "[*]\nhfd = org/draft:Q2_K\n",
            (),
            ["org/big/preset.ini:2: draft org/draft at main", "has no GGUF model with tag Q2_K"],
            id="no-such-quant",
        ),
        pytest.param(
            "[*]\nhfd = org/gone:Q8_0\n",
            (),
            ["org/big/preset.ini:2: repo org/gone not found"],
            id="unknown-repo",
        ),
    ],
)
def test_a_preset_draft_that_is_ambiguous_or_missing_is_refused_at_lock_with_file_and_line(
    served: MirrorServer,
    mirror_root: MirrorRoot,
    project: Path,
    tmp_path: Path,
    preset: str,
    drafts: tuple[str, ...],
    words: list[str],
) -> None:
    publish(mirror_root, tmp_path, preset, drafts)
    manifest = write_manifest(project, {"big": ENTRY})
    with pytest.raises(UserError) as caught:
        api.lock(manifest)
    for word in words:
        assert word in caught.value.message
    assert caught.value.exit_code == 1
    assert not (project / "models.lock").exists()
