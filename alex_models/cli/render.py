"""Printing results: human text on stdout, or one JSON object with ``--json``."""

from __future__ import annotations

import json
import sys
from typing import Any

JSON_FORMAT_VERSION = 1


def print_json(kind: str, data: dict[str, Any]) -> None:
    """One versioned JSON object with sorted keys, for scripts."""
    payload = {"format": JSON_FORMAT_VERSION, "kind": kind, **data}
    sys.stdout.write(json.dumps(payload, sort_keys=True, indent=2, default=str) + "\n")


def say(line: str) -> None:
    print(line)


def warn(line: str) -> None:
    print(line, file=sys.stderr)
