"""``alex-models mirror``: serve a folder of repos as a Hugging Face Hub-compatible endpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alex_models._platform import wait_until_interrupted
from alex_models.cli.render import say

if TYPE_CHECKING:
    from alex_models.mirror import Faults, RequestRecord

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

    faults = Faults([Fault.parse(spec) for spec in fault or []])
    _serve_until_stopped(
        root,
        host=host,
        port=port,
        cdn_port=(port + 1 if port else 0) if cdn_port is None else cdn_port,
        faults=faults,
        access_log=not quiet,
    )


def _serve_until_stopped(
    root: Path, *, host: str, port: int, cdn_port: int, faults: Faults, access_log: bool
) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM, which stop it at once: requests in flight
    are cut (a client resumes them), and the exit code says which signal it was (130, 143)."""
    from alex_models.errors import Interrupted, UserError, exit_code_of
    from alex_models.mirror import MirrorServer
    from alex_models.mirror.stderr import write_stderr

    def log_line(record: RequestRecord) -> None:
        tags = f" [{','.join(record.faults)}]" if record.faults else ""
        write_stderr(
            f"{record.method} {record.origin} {record.path} {record.status} {record.bytes_sent}B{tags}"
        )

    try:
        server = MirrorServer(
            root,
            host=host,
            port=port,
            cdn_port=cdn_port,
            faults=faults,
            on_request=log_line if access_log else None,
        )
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} or {cdn_port}: {exc.strerror}",
            hint="pick other ports with --port/--cdn-port (0 picks a free one)",
        ) from None
    try:
        with server:
            say(f"Serving {root} at {server.url} (LFS bytes from {server.cdn_url})")
            say(f"  export HF_ENDPOINT={server.url}")
            sys.stdout.flush()
            wait_until_interrupted()
    except KeyboardInterrupt as exc:  # Interrupted too (SIGTERM): the server is stopped by now
        raise Interrupted(f"interrupted; stopped serving {server.url}", exit_code=exit_code_of(exc)) from None


def main_standalone() -> None:
    """``python -m alex_models.mirror``: the ``serve`` command as a program of its own."""
    from alex_models.cli.errors import GuardedCommand, run_guarded

    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command(cls=GuardedCommand)(serve)
    run_guarded(lambda: standalone(prog_name="python -m alex_models.mirror"), None)
