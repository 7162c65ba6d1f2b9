"""``alex-models mirror``: serve a folder of repos as a Hugging Face Hub-compatible endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

mirror_app = typer.Typer(
    help="Serve repos as a Hugging Face Hub-compatible endpoint (HF_ENDPOINT).", no_args_is_help=True
)


@mirror_app.command("serve")
def serve(
    root: Annotated[
        Path,
        typer.Option("--root", help="Folder laid out as ROOT/<org>/<name>/{refs.json,repo.json,<commit>/…}."),
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port (0 picks a free one).", min=0, max=65535)] = 8090,
    cdn_port: Annotated[
        int | None,
        typer.Option(help="Port of the second origin that serves LFS bytes (default: the API port + 1)."),
    ] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="Inject a fault, e.g. 'latency=50ms', 'bandwidth=50MB', 'drop-after=15MB,times=1', "
            "'status=503,times=2', 'rate-limit=1', 'corrupt,file=*.gguf'. Repeatable.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print a line per request.")] = False,
) -> None:
    """Serve ROOT until interrupted; point clients at it with HF_ENDPOINT."""
    from alex_models.mirror.faults import Fault, Faults
    from alex_models.mirror.server import serve_until_stopped

    faults = Faults([Fault.parse(spec) for spec in fault or []])
    serve_until_stopped(
        root,
        host=host,
        port=port,
        cdn_port=(port + 1 if port else 0) if cdn_port is None else cdn_port,
        faults=faults,
        access_log=not quiet,
    )


def main_standalone() -> None:
    """``python -m alex_models.mirror``: the ``serve`` command as a program of its own."""
    from alex_models.cli.errors import run_guarded

    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command()(serve)
    run_guarded(lambda: standalone(prog_name="python -m alex_models.mirror"), None)
