"""Shared pieces of the reliability tests: repos of tiny GGUFs on the mirror, what the store
holds of them, and the request log once it holds what a test waits for (the helpers every test
module uses are in ``helpers``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import blob, cdn_gets, cli, home, progress_done, sha256, write_manifest

from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord
from alex_models.tinymodels import write_tiny_gguf

MB = 1000 * 1000


@dataclass(frozen=True)
class Model:
    key: str
    repo: str
    file: str
    size: int
    sha256: str


def publish(root: MirrorRoot, folder: Path, paddings: Iterable[int]) -> list[Model]:
    """One repo per padding, each with one GGUF of about that many bytes (all distinct)."""
    folder.mkdir(parents=True, exist_ok=True)
    models = []
    for n, padding in enumerate(paddings, 1):
        key, name = f"m{n}", f"m{n}-Q4_K_M.gguf"
        made = write_tiny_gguf(folder / name, context_length=1000 + n, padding=padding)
        data = made.read_bytes()
        root.commit(f"org/{key}", {name: made})
        models.append(Model(key, f"org/{key}", name, len(data), sha256(data)))
    return models


def locked_project(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    folder: Path,
    paddings: Iterable[int],
    monkeypatch: pytest.MonkeyPatch,
) -> list[Model]:
    """GGUFs of these paddings on the mirror, and ``project`` naming them all, locked against it."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    models = publish(mirror_root, folder, paddings)
    manifest(project, models)
    locked = cli(project, "lock")
    assert locked.returncode == 0, locked.stderr
    return models


def manifest(project: Path, models: Iterable[Model]) -> Path:
    return write_manifest(project, {m.key: {"repo": m.repo, "quant": "Q4_K_M"} for m in models})


def stored_bytes(models: Iterable[Model]) -> int:
    """Bytes the store holds for ``models``: whole blobs plus checkpointed partials."""
    total = 0
    for m in models:
        if blob(m.sha256).exists():
            total += m.size
        else:
            total += progress_done(home() / "tmp" / f"{m.sha256}.json")
    return total


def delivered(model: Model) -> Callable[[list[RequestRecord]], bool]:
    """Whether a log holds a CDN GET that sent ``model``'s file through its last byte: the record
    of the request that completed it (it lands a moment after the client has read it)."""

    def ready(log: list[RequestRecord]) -> bool:
        for r in cdn_gets(log, model.file):
            start = int(r.range.removeprefix("bytes=").split("-")[0]) if r.range else 0
            if r.status in (200, 206) and r.bytes_sent == model.size - start:
                return True
        return False

    return ready


def report(name: str, figures: dict[str, Any]) -> None:
    """Print the figures, and merge them into ``$ALEX_MODELS_RELIABILITY_REPORT`` when it is set."""
    print(f"reliability {name}: {json.dumps(figures, sort_keys=True)}")
    target = os.environ.get("ALEX_MODELS_RELIABILITY_REPORT")
    if not target:
        return
    path = Path(target)
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        existing = {}
    if not isinstance(existing, dict):
        existing = {}
    existing[name] = figures
    path.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n", encoding="utf-8")
