"""What the commands that must start fast load: a sync with nothing to fetch, ``status``, ``path``
and ``--help`` never import the HTTP stack, huggingface_hub, rich, numpy or the downloader; once
``models.yaml`` and ``models.lock`` were read, reading the same bytes again loads no YAML parser.

Each command runs in a fresh interpreter, through the CLI's own entry point, in a synced project
whose endpoint is unreachable; the interpreter then says which of those modules it holds. How
long start-up takes is measured by ``bench/startup.py``, not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import listing, write_manifest
from typer.testing import CliRunner

from alex_models import api, cli
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

HEAVY = (
    "httpx2",
    "httpcore2",
    "huggingface_hub",
    "rich",
    "numpy",
    "gguf",
    "alex_models.download",
    "alex_models.sources",
    "filelock",  # nothing to download or register: no lock to take
)
PARSER = (
    "ruamel.yaml",  # the files' bytes were parsed before: the kept parse is validated (_doccache)
    "alex_models.emit",  # no emit: targets in the manifest, nothing to render
)

PROBE = """
import json, sys
from alex_models.cli import main
try:
    main(sys.argv[2:])
    code = 0
except SystemExit as exc:
    code = exc.code
print(json.dumps({"exit": code, "loaded": [m for m in json.loads(sys.argv[1]) if m in sys.modules]}))
"""


def loaded_by(
    project: Path, *args: str, watch: tuple[str, ...] = HEAVY, endpoint: str = "http://127.0.0.1:9"
) -> tuple[object, list[str]]:
    """Run the CLI with ``args`` in a fresh interpreter; its exit code and which of ``watch`` it loaded.
    The endpoint answers nothing unless one is given: no network needed."""
    env = {**os.environ, "HF_ENDPOINT": endpoint}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(watch), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    return report["exit"], report["loaded"]


@pytest.fixture
def synced(
    project: Path, mirror_root: MirrorRoot, mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A project with one model, locked and synced: every blob and view in place."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    model = write_tiny_gguf(project.parent / "tiny-Q4_K_M.gguf")
    mirror_root.commit("org/tiny-GGUF", {"tiny-Q4_K_M.gguf": model})
    write_manifest(project, {"tiny": {"repo": "org/tiny-GGUF", "quant": "Q4_K_M"}})
    api.sync(project / "models.yaml")
    return project


def test_a_synced_project_syncs_shows_status_and_path_without_the_http_stack_rich_numpy_or_downloader(
    synced: Path,
) -> None:
    store = Path(os.environ["ALEX_MODELS_HOME"])
    before = listing(store)
    for args in (("sync",), ("status",), ("path", "tiny")):
        code, loaded = loaded_by(synced, *args, watch=(*HEAVY, *PARSER))

        assert (code, loaded) == (0, []), args
    assert listing(store) == before  # nor does any of them write (or flush) a file in the store

    # The witness is not blind: once a blob is missing, the same probe sees the downloader load.
    for blob in (store / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    code, loaded = loaded_by(synced, "sync", "--offline")
    assert code == 1  # offline, and the blob is gone: it would have to be downloaded
    assert "alex_models.download" in loaded


def test_a_one_byte_edit_of_the_manifest_or_the_lock_is_parsed_again(synced: Path) -> None:
    manifest, lock = synced / "models.yaml", synced / "models.lock"
    # JSON's spaces are YAML's too: one more byte, the same meaning, another file.
    manifest.write_bytes(manifest.read_bytes().replace(b'"version": 1', b'"version":  1'))

    assert loaded_by(synced, "sync", watch=PARSER) == (0, ["ruamel.yaml"])

    lock.write_bytes(lock.read_bytes().replace(b"\nversion: 1\n", b"\nversion:  1\n"))

    assert loaded_by(synced, "status", watch=PARSER) == (0, ["ruamel.yaml"])


def test_help_loads_neither_rich_nor_the_api(project: Path) -> None:
    """Help is typer's plain text (rich_markup_mode=None), and no use case runs."""
    for args in (("--help",), ("sync", "--help")):
        code, loaded = loaded_by(project, *args, watch=(*HEAVY, "alex_models.api._sync"))

        assert (code, loaded) == (0, []), args


def test_a_sync_that_downloads_loads_neither_numpy_nor_the_hub_api_client(
    synced: Path, mirror: MirrorServer
) -> None:
    """Those imports cost a download about 0.2 s: the GGUF header check has its own reader, and the
    token lookup loads only huggingface_hub's token helper."""
    store = Path(os.environ["ALEX_MODELS_HOME"])
    for blob in (store / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    watch = ("numpy", "gguf", "huggingface_hub.hf_api", "alex_models.download")
    code, loaded = loaded_by(synced, "sync", "--frozen", watch=watch, endpoint=mirror.url)

    assert (code, loaded) == (0, ["alex_models.download"])  # it did download, without the others


def test_a_run_builds_only_the_command_it_names_which_says_what_the_whole_app_says() -> None:
    """``main`` gives typer an app with only the named command (typer builds every registered
    command from its signature on each run); its help and usage errors are the whole app's."""
    runner = CliRunner()
    runs = [[name, "--help"] for name in [*cli._COMMANDS, *cli._GROUPS]] + [["-v", "sync", "--no-such"]]
    for args in runs:
        alone = cli._app_for(args, "alex-models")
        assert len(alone.registered_commands) + len(alone.registered_groups) == 1

        said, whole = (runner.invoke(a, args, prog_name="alex-models") for a in (alone, cli.app))
        assert (said.exit_code, said.output) == (whole.exit_code, whole.output), args
    for args in ([], ["--help"], ["--help", "sync"], ["--version"], ["snyc"]):  # the whole app's
        assert cli._app_for(args, "alex-models") is cli.app
