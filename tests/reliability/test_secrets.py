"""Secrets: with ``HF_TOKEN`` set, the token goes to the endpoint's API origin only, and is written
nowhere and printed nowhere, even with ``--verbose``; an emitted app config carries no ``api_key``.

Real subprocesses of the installed CLI against the mirror server, whose second origin (the CDN
that serves LFS bytes after a redirect) shows where the token stops.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import cli, write_manifest
from ruamel.yaml import YAML

from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord
from alex_models.tinymodels import write_tiny_gguf

TOKEN = "hf_secret_for_tests_123"
REPO = "org/private"
APP_CONFIG = """\
# the app's settings
runtime:
  llm_provider: openai
  api_key: sk-remote-secret-456
  temperature: 0.2
"""
COMMANDS = (
    ("lock",),
    ("sync",),
    ("emit", "llama-server"),
    ("emit", "alex", "--into", "app.yaml"),
    ("status",),
)


@dataclass(frozen=True)
class Run:
    project: Path
    results: list[subprocess.CompletedProcess[str]]
    log: list[RequestRecord]


@pytest.fixture
def run(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Run:
    """lock, sync, emit (twice) and status with ``--verbose``, HF_TOKEN set, on a private repo."""
    mirror_root.create_repo(REPO, private=True, tokens=[TOKEN])
    mirror_root.commit(REPO, {"model.gguf": write_tiny_gguf(tmp_path / "m.gguf").read_bytes()})
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    write_manifest(project, {"chat": {"repo": REPO, "file": "model.gguf"}})
    (project / "app.yaml").write_text(APP_CONFIG, encoding="utf-8")

    results = [cli(project, "--verbose", *command) for command in COMMANDS]

    for command, result in zip(COMMANDS, results, strict=True):
        assert result.returncode == 0, (command, result.stderr)
    log = mirror.wait_log(lambda log: any(r.origin == "cdn" and r.method == "GET" for r in log))
    return Run(project, results, log)


def _written_files(project: Path) -> Iterator[Path]:
    """Every file the commands could have written: the project, the store, HF_HOME, HOME, XDG."""
    roots = [project] + [
        Path(os.environ[name])
        for name in ("ALEX_MODELS_HOME", "HF_HOME", "HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")
    ]
    for root in roots:
        yield from (p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.slow
def test_the_token_appears_in_no_file_written(run: Run) -> None:
    files = list(_written_files(run.project))

    assert any(p.name == "models.lock" for p in files)
    assert any("blobs" in p.parts for p in files)
    assert [p for p in files if TOKEN.encode() in p.read_bytes()] == []


@pytest.mark.slow
def test_the_token_appears_in_no_output(run: Run) -> None:
    for result in run.results:
        assert TOKEN not in result.stdout
        assert TOKEN not in result.stderr


@pytest.mark.slow
def test_the_token_goes_to_the_api_origin_and_never_to_the_cdn(run: Run) -> None:
    # huggingface_hub also asks the API origin for /api/agent-harnesses, without a token: fine, the
    # token may go to the endpoint host; what matters is that the repo's requests carry it there.
    repo_api = [r for r in run.log if r.origin == "api" and f"/{REPO}/" in r.path]
    cdn = [r for r in run.log if r.origin == "cdn"]

    assert repo_api
    assert cdn
    assert all(r.authorization for r in repo_api)
    assert not any(r.authorization for r in cdn)


@pytest.mark.slow
def test_the_emitted_alex_config_has_no_api_key_though_the_input_had_one(run: Run) -> None:
    text = (run.project / "app.yaml").read_text(encoding="utf-8")

    assert "api_key" not in text
    assert "sk-remote-secret-456" not in text
    assert "api_key" not in YAML(typ="safe").load(text)["runtime"]


@pytest.mark.slow
def test_a_refused_token_appears_in_no_output_even_with_verbose(
    mirror_root: MirrorRoot, mirror: MirrorServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror_root.create_repo(REPO, private=True, tokens=["hf_another_token_789"])
    mirror_root.commit(REPO, {"notes.txt": b"hello\n"})
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    write_manifest(project, {"chat": {"repo": REPO, "file": "notes.txt"}})

    result = cli(project, "--verbose", "lock")

    assert result.returncode == 1, result.stderr
    assert TOKEN not in result.stdout
    assert TOKEN not in result.stderr
    assert [p for p in _written_files(project) if TOKEN.encode() in p.read_bytes()] == []
