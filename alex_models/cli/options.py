"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ManifestOpt = Annotated[
    Path,
    typer.Option(
        "--manifest", "-f", help="The manifest; the lock is models.lock beside it.", show_default=True
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON object for scripts instead of text.")]
