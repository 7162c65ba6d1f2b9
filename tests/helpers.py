"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path


def write_manifest(directory: Path, models: Mapping[str, Mapping[str, object]]) -> Path:
    """``directory/models.yaml`` with these models, in this order (JSON is YAML)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "models.yaml"
    path.write_text(json.dumps({"version": 1, "models": models}, indent=2) + "\n", encoding="utf-8")
    return path
