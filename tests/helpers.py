"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

CLI = Path(sys.executable).parent / "alex-models"


def write_manifest(directory: Path, models: Mapping[str, Mapping[str, object]]) -> Path:
    """``directory/models.yaml`` with these models, in this order (JSON is YAML)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "models.yaml"
    path.write_text(json.dumps({"version": 1, "models": models}, indent=2) + "\n", encoding="utf-8")
    return path


def cli(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed ``alex-models`` in ``cwd`` with this test's environment (HF_ENDPOINT included),
    stdout and stderr captured (so neither is a TTY)."""
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def small_disk(mount_point: Path, size: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ALEX_MODELS_HOME on a tmpfs of ``size`` bytes, unmounted afterwards."""
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(
            f"cannot mount a {size}-byte tmpfs for a disk-space test (needs root): {mounted.stderr.strip()}"
        )
    try:
        monkeypatch.setenv("ALEX_MODELS_HOME", str(mount_point))
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)
