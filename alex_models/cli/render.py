"""Printing results: human text on stdout, or one JSON object with ``--json``; labelled lines
(``error:``, ``hint:``) on stderr, their label coloured only where rich colours (a terminal)."""

from __future__ import annotations

import json
import sys
from typing import Any

JSON_FORMAT_VERSION = 1
_LABEL_STYLES = {"error": "bold red", "hint": "bold cyan", "warning": "bold yellow"}


class _Requested:
    """Whether the running command was given ``--json``: set while options parse, read by the
    error boundary, which then also reports the error as JSON on stdout."""

    json = False


REQUESTED = _Requested()


def print_json(kind: str, data: dict[str, Any]) -> None:
    """One versioned JSON object with sorted keys, for scripts, in a single write (a script never
    reads half an object, even when the command fails right after)."""
    payload = {"format": JSON_FORMAT_VERSION, "kind": kind, **data}
    sys.stdout.write(json.dumps(payload, sort_keys=True, indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(line: str) -> None:
    """A line of the command's output, on stdout."""
    print(line)


def warn(line: str) -> None:
    """A line for the person watching, on stderr."""
    print(line, file=sys.stderr)


def labelled(label: str, text: str) -> None:
    """``label: text`` as one line on stderr. rich decides on colour: only on a terminal, none
    with NO_COLOR or TERM=dumb, forced by FORCE_COLOR. Imported here, not at the top, so commands
    that succeed never load it."""
    from rich.console import Console
    from rich.text import Text

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    console.print(Text.assemble((f"{label}:", _LABEL_STYLES.get(label, "bold")), f" {text}"))
