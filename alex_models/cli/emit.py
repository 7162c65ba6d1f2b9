"""``alex-models emit``: llama.cpp runtime configuration for the locked models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alex_models.cli.options import JsonOpt, ManifestOpt, complete_model_name
from alex_models.cli.render import labelled, say, warn
from alex_models.formats import EmitFormat, Shell

if TYPE_CHECKING:
    from alex_models.api import ProbeResult


def emit(
    format_name: Annotated[
        str | None,
        typer.Argument(
            metavar="[FORMAT]",
            help=f"{', '.join(EmitFormat)}. Without one: the files in the manifest's emit: list.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write to this file (default: print).")
    ] = None,
    into: Annotated[
        Path | None, typer.Option("--into", help="alex: merge into this app config, keeping its comments.")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Just this model (repeatable).", autocompletion=complete_model_name),
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="alex: the URL the app talks to.")
    ] = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 naming each file that differs from the lock."),
    ] = False,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing", help="Emit the paths of models that are not synced (yet); else exit 1."
        ),
    ] = False,
    shell: Annotated[
        Shell | None,
        typer.Option(
            "--shell",
            help="Quote command lines for this shell (llama-server, llama-server-env's note; llama-swap: "
            "powershell and cmd mean its Windows rules). Default: the --out file's extension "
            "(.sh, .ps1, .cmd, .bat), else powershell on Windows, sh elsewhere.",
        ),
    ] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """Write runtime config that points llama.cpp at the synced, locked files."""
    from alex_models import api
    from alex_models.errors import UsageError

    if format_name is None:
        if shell is not None:
            raise UsageError(
                "--shell goes with a FORMAT", hint="the manifest's emit: entries take a 'shell:' key"
            )
        results = api.emit_targets(manifest, check=check, allow_missing=allow_missing)
        if not results:
            warn("models.yaml has no emit: list; name a FORMAT")
    else:
        results = [
            api.emit(
                format_name,
                manifest,
                out=out,
                into=into,
                only=only or (),
                base_url=base_url,
                as_json=json_output,
                check=check,
                allow_missing=allow_missing,
                shell=shell,
            )
        ]
    for line in dict.fromkeys(w for result in results for w in result.warnings):
        labelled("warning", line)
    for result in results:
        if result.path is None:
            typer.echo(result.text, nl=False)
        elif check:
            say(f"{'differs' if result.changed else 'up to date'}: {result.path}")
        else:
            say(f"{'wrote' if result.changed else 'unchanged'}: {result.path}")
    if check and any(result.changed for result in results):
        labelled("hint", "run 'alex-models emit' (or 'alex-models sync') to rewrite them")
        raise typer.Exit(1)


def probe(
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="The server's OpenAI URL (default: each model's, from models.yaml); "
            "without --name, checked against every locked model it could be serving.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Look for this locked model only (default: every one).",
            autocompletion=complete_model_name,
        ),
    ] = None,
    manifest: ManifestOpt = Path("models.yaml"),
    json_output: JsonOpt = False,
) -> None:
    """Are the llama.cpp servers up, which models do they serve, and are those the locked files?

    Exit 0 when every model looked for is served from its locked file, 1 otherwise.
    """
    from alex_models import api
    from alex_models.cli.render import print_json

    report = api.probe(base_url, name, manifest)
    if json_output:
        print_json("probe", {"ok": report.ok, "results": [_probe_json(result) for result in report.results]})
    else:
        for result in report.results:
            _say_probe(result)
    if not report.ok:
        raise typer.Exit(1)


def _probe_json(result: ProbeResult) -> dict[str, object]:
    return {
        "name": result.name,
        "base_url": result.base_url,
        "up": result.up,
        "status": result.status,
        "served": list(result.served),
        "model_path": result.model_path,
        "expected": str(result.expected) if result.expected else None,
        "matches": result.matches,
        "candidates": list(result.candidates),
        "synced": result.synced,
        "ok": result.ok,
    }


def _say_probe(result: ProbeResult) -> None:
    where = f"{result.name} at {result.base_url}" if result.name else result.base_url
    say(f"{where}: {'up' if result.up else 'down'} ({result.status})")
    if result.served:
        say(f"  serving: {', '.join(result.served)}")
    if result.matches is not None and result.name is not None:
        verdict = "is" if result.matches else "is NOT"
        say(f"  {result.model_path} {verdict} the locked file of {result.name} ({result.expected})")
    elif result.up and result.name is not None and result.name not in result.served:
        say(f"  {result.name} is not among the models it serves")
    if not result.synced:
        say(f"  {result.name} is not synced here: no locked file to compare with ('alex-models status')")
    if result.candidates:
        looked = ", ".join(result.candidates)
        if not result.up:
            say(f"  looked for: {looked}")
        else:
            served = result.model_path or "what it serves"
            say(f"  {served} is none of the locked files of {looked}")
