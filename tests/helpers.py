"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

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
