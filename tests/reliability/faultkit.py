"""Shared pieces of the reliability tests: repos of tiny GGUFs on the mirror, background
``alex-models`` runs, bounded polling, and the witnesses (request log, store contents)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import CLI, blob, cli, home, progress_done, write_manifest

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
        models.append(Model(key, f"org/{key}", name, len(data), hashlib.sha256(data).hexdigest()))
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


def blob_files() -> list[Path]:
    return sorted(p for p in (home() / "blobs").rglob("*") if p.is_file())


def view_files() -> list[Path]:
    top = home() / "llama.cpp"
    return sorted(p for p in top.rglob("*") if p.is_file() or p.is_symlink()) if top.exists() else []


def sha_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def start(cwd: Path, *args: str, **popen: Any) -> tuple[subprocess.Popen[str], Path]:
    """``alex-models`` in the background, and the file its stderr goes to (stdout: same name, .o)."""
    count = len(list(cwd.parent.glob("run-*.o")))
    out_path, err_path = cwd.parent / f"run-{count}.o", cwd.parent / f"run-{count}.e"
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen(
            [str(CLI), *args], cwd=cwd, env=dict(os.environ), stdout=out, stderr=err, text=True, **popen
        )
    return process, err_path


def stored_bytes(models: Iterable[Model]) -> int:
    """Bytes the store holds for ``models``: whole blobs plus checkpointed partials."""
    total = 0
    for m in models:
        if blob(m.sha256).exists():
            total += m.size
        else:
            total += progress_done(home() / "tmp" / f"{m.sha256}.json")
    return total


def cdn_gets(log: list[RequestRecord], name: str | None = None) -> list[RequestRecord]:
    return [
        r
        for r in log
        if r.origin == "cdn" and r.method == "GET" and (name is None or r.path.endswith("/" + name))
    ]


def settled_log(server: MirrorServer, quiet: float = 0.5, timeout: float = 15.0) -> list[RequestRecord]:
    """The request log once no new record has landed for ``quiet`` seconds (killed clients' requests
    are logged when the server next fails to write to them)."""
    deadline = time.monotonic() + timeout
    count, since = len(server.log), time.monotonic()
    while time.monotonic() < deadline:
        now = len(server.log)
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.05)
    return server.log


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
