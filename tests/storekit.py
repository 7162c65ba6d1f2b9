"""A store synced from the fixture mirror, for the tests of ``mirror serve --store``: one repo
with a locked quant, two locked small files (one in a folder) and an unlocked quant."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import write_manifest

from alex_models import api
from alex_models.mirror import MirrorRoot
from alex_models.tinymodels import write_tiny_gguf

REPO = "org/chat"
GGUF = "chat-Q4_K_M.gguf"
MODELS: dict[str, dict[str, object]] = {
    "chat": {"repo": REPO, "quant": "Q4_K_M"},
    "extras": {"repo": REPO, "files": ["config.json", "sub/notes.txt"]},
}
LOCKED = (GGUF, "config.json", "sub/notes.txt")


@dataclass(frozen=True)
class Synced:
    """A project locked and synced from the fixture mirror into this test's store."""

    project: Path
    home: Path
    commit: str
    files: dict[str, bytes]


def sync_project(mirror_root: MirrorRoot, endpoint: str, folder: Path, store_home: Path) -> Synced:
    """Commit REPO on the fixture mirror, then lock and sync MODELS from it into ``store_home``."""
    files = {
        GGUF: write_tiny_gguf(folder / "chat.gguf", context_length=1000).read_bytes(),
        "chat-Q8_0.gguf": write_tiny_gguf(folder / "q8.gguf", context_length=2000).read_bytes(),
        "config.json": b'{"model_type": "llama"}\n',
        "sub/notes.txt": b"notes\n",
    }
    commit = mirror_root.commit(REPO, files)
    project = folder / "ci"
    write_manifest(project, MODELS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_ENDPOINT", endpoint)
        api.sync(project / "models.yaml", store_home=store_home)  # in-process: setting up
    return Synced(project, store_home, commit, files)
