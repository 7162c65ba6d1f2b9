"""Commands on the project's files: ``init``, ``add``, ``lock``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alex_models.cli.options import JsonOpt, ManifestOpt, complete_model_name
from alex_models.cli.render import labelled, print_json, say, warn

if TYPE_CHECKING:
    from alex_models.api import LockResult


def init(manifest: ManifestOpt = Path("models.yaml"), json_output: JsonOpt = False) -> None:
    """Write a commented starter models.yaml."""
    from alex_models import api

    path = api.init(manifest)
    if json_output:
        print_json("init", {"manifest": str(path.absolute())})
        return
    say(f"Wrote {path}. Next: 'alex-models add REPO --quant Q4_K_M', or edit it and run 'alex-models lock'.")


def add(
    repo: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF.")],
    files: Annotated[
        list[str] | None, typer.Argument(help="Files or globs in the repo (or use --quant).")
    ] = None,
    quant: Annotated[
        str | None, typer.Option(help="Pick the GGUF with this quant label, e.g. Q4_K_M.")
    ] = None,
    revision: Annotated[
        str | None, typer.Option(help="Branch, tag or commit (default: the manifest's).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default: from the repo name).")] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """Add a model to models.yaml (comments kept) and lock it."""
    from alex_models import api

    result = api.add(repo, files or [], quant=quant, revision=revision, name=name, manifest_path=manifest)
    if json_output:
        print_json(
            "add", {"name": result.name, "manifest": str(result.manifest_path), **_lock_json(result.lock)}
        )
        return
    say(f"Added {result.name} to {result.manifest_path}; locked in {result.lock.lock_path}.")


def lock(
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the lock is out of date.")
    ] = False,
    upgrade: Annotated[
        bool, typer.Option("--upgrade", help="Re-resolve every model, not only changed ones.")
    ] = False,
    upgrade_model: Annotated[
        list[str] | None,
        typer.Option(
            "--upgrade-model", help="Re-resolve this model (repeatable).", autocompletion=complete_model_name
        ),
    ] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """Resolve models.yaml into models.lock: exact commits, sizes and SHA256 of every file."""
    from alex_models import api

    chosen: bool | frozenset[str] = True if upgrade else frozenset(upgrade_model or ())
    result = api.lock(manifest, check=check, upgrade=chosen or False)
    if json_output:
        print_json("lock", _lock_json(result))
    elif check:
        if result.stale:
            warn(f"{result.lock_path} is out of date with {manifest}:")
            for change in result.drift:
                warn(f"  {change.describe()}")
            labelled("hint", "run 'alex-models lock' and commit models.lock")
        else:
            say(f"{result.lock_path} is up to date with {manifest}.")
    elif result.written:
        kept = "" if not result.resolved else f" (resolved {', '.join(result.resolved)})"
        say(f"Wrote {result.lock_path}{kept}.")
    else:
        say(f"{result.lock_path} is up to date.")
    if check and result.stale:
        raise typer.Exit(1)


def _lock_json(result: LockResult) -> dict[str, object]:
    return {
        "lock": str(result.lock_path),
        "stale": result.stale,
        "drift": [{"name": d.name, "kind": d.kind, "change": d.describe()} for d in result.drift],
        "resolved": list(result.resolved),
        "written": result.written,
    }
