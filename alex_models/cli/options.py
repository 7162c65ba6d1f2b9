"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alex_models.cli.render import REQUESTED


def _json_requested(value: bool) -> bool:
    REQUESTED.json = value
    return value


def complete_model_name(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion: the model names of the manifest on the command line (or models.yaml);
    none while it does not load, since a half-edited file is normal while typing."""
    from alex_models.errors import AlexModelsError
    from alex_models.manifest import load_manifest

    manifest = ctx.params.get("manifest") or Path("models.yaml")
    try:
        names = load_manifest(Path(manifest)).models
    except AlexModelsError:
        return []
    return [name for name in names if name.startswith(incomplete)]


ManifestOpt = Annotated[
    Path,
    typer.Option(
        "--manifest", "-f", help="The manifest; the lock is models.lock beside it.", show_default=True
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print a JSON object for scripts instead of text.", callback=_json_requested),
]

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
