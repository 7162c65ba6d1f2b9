"""LoRA adapters: locked with their model, synced (GGUF-checked), emitted as --lora."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_manifest

from alex_models import api
from alex_models.emit.flags import ServerFlags
from alex_models.ggufinfo import NotGGUFError
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

REPO = "org/tuned-GGUF"


@pytest.fixture
def published(
    tmp_path: Path, mirror_root: MirrorRoot, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    source = tmp_path / "src"
    source.mkdir()
    return mirror_root.commit(
        REPO,
        {
            "base-Q4_K_M.gguf": write_tiny_gguf(source / "base.gguf"),
            "lora/style.gguf": write_tiny_gguf(source / "style.gguf", padding=64),
            "lora/tone.gguf": write_tiny_gguf(source / "tone.gguf", padding=128),
            "lora/broken.gguf": b"not a gguf",
        },
    )


def test_lora_adapters_are_locked_synced_and_emitted_as_one_lora_option(
    published: str, project: Path
) -> None:
    manifest = write_manifest(
        project, {"tuned": {"repo": REPO, "quant": "Q4_K_M", "lora": ["lora/s*.gguf", "lora/t*"]}}
    )

    result = api.sync(manifest)
    line = api.emit("llama-server", manifest, flags=ServerFlags()).text

    locked = api.read_lock(project / "models.lock")
    assert locked is not None
    assert [(f.path, f.role) for f in locked.models["tuned"].files] == [
        ("base-Q4_K_M.gguf", "model"),
        ("lora/style.gguf", "lora"),
        ("lora/tone.gguf", "lora"),
    ]
    views = {view.name: view for view in result.models[0].views}
    assert f"--lora {views['style.gguf']},{views['tone.gguf']}" in line
    assert all(view.exists() for view in views.values())


def test_a_lora_file_that_is_not_gguf_is_refused_before_it_is_stored(published: str, project: Path) -> None:
    manifest = write_manifest(
        project, {"tuned": {"repo": REPO, "quant": "Q4_K_M", "lora": ["lora/broken.gguf"]}}
    )

    with pytest.raises(NotGGUFError) as caught:
        api.sync(manifest)

    assert caught.value.exit_code == 3
    assert "lora/broken.gguf" in caught.value.message
