"""The command line as a user runs it: real subprocesses of the installed console script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest
from helpers import CLI, mirror_process

from alex_models import __version__
from alex_models.mirror import MirrorRoot

HEAVY_MODULES = ("huggingface_hub", "httpx2", "pydantic", "gguf", "numpy", "ruamel")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def test_version_prints_the_package_version() -> None:
    result = run(str(CLI), "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"alex-models {__version__}"


def test_python_dash_m_runs_the_same_cli() -> None:
    result = run(sys.executable, "-m", "alex_models", "--help")
    assert result.returncode == 0
    assert "mirror" in result.stdout


def test_help_imports_no_heavy_module() -> None:
    # --help must stay fast: the heavy stacks load inside the commands that need them.
    result = run(sys.executable, "-X", "importtime", "-m", "alex_models", "--help")
    assert result.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()}
    assert imported.isdisjoint(HEAVY_MODULES), imported & set(HEAVY_MODULES)


def test_user_error_is_one_line_with_hint_and_exit_1(tmp_path: Path) -> None:
    result = run(str(CLI), "mirror", "serve", "--root", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: mirror root {tmp_path / 'missing'} is not a directory",
        "hint: create it, or point --root at a folder laid out as ROOT/<org>/<name>/<commit>/",
    ]


def test_bad_fault_spec_is_a_usage_error_exit_2(tmp_path: Path) -> None:
    result = run(str(CLI), "mirror", "serve", "--root", str(tmp_path), "--fault", "explode")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown fault kind 'explode' in --fault 'explode'\n")
    assert "Traceback" not in result.stderr


@pytest.mark.posix("SIGTERM delivered to a child")
def test_mirror_module_serves_with_command_line_faults_and_exits_143_on_sigterm(
    mirror_root: MirrorRoot,
) -> None:
    commit = mirror_root.commit("org/tiny", {"config.json": b"{}"})
    process, endpoint = mirror_process(
        [sys.executable, "-m", "alex_models.mirror", "--root", str(mirror_root.root), "--port", "0",
         "--fault", "status=503,times=1"]
    )  # fmt: skip
    try:
        url = f"{endpoint}/org/tiny/resolve/main/config.json"
        with httpx2.Client() as client:
            assert client.get(url).status_code == 503
            second = client.get(url)
        assert second.status_code == 200
        assert second.headers["X-Repo-Commit"] == commit
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143
    assert "GET api /org/tiny/resolve/main/config.json 503" in stderr
    assert stderr.splitlines()[-1] == f"interrupted; stopped serving {endpoint}"


@pytest.mark.posix("the errno text of a folder under a file")
def test_a_refusal_no_use_case_foresaw_is_one_line_naming_the_path_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text("version: 1\nmodels: {}\n", encoding="utf-8")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder", encoding="utf-8")
    env = {**os.environ, "ALEX_MODELS_HOME": str(a_file / "store")}

    done = subprocess.run(
        [str(CLI), "sync"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )

    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"error: Not a directory: {a_file / 'store'}"
    assert "Traceback" not in done.stderr
