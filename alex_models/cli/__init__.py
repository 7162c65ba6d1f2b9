"""The ``alex-models`` command line: a thin layer over the Python API.

Only this package imports typer and rich. Commands import what they need inside their bodies, so
``alex-models --help`` loads neither huggingface_hub nor pydantic nor the HTTP stack; help is
click's plain text, not typer's rich panels, so it loads no rich either (importing rich costs about
as much start-up as the whole plain ``--help``; see docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from alex_models import __version__
from alex_models.cli import demo, emit, project, remote, store
from alex_models.cli.bundle import bundle_app
from alex_models.cli.errors import GuardedGroup, run_guarded
from alex_models.cli.mirror import mirror_app

app = typer.Typer(
    name="alex-models",
    help="A lockfile for local LLM weights: pinned Hugging Face commits, verified files, llama.cpp config.",
    no_args_is_help=True,
    cls=GuardedGroup,
    rich_markup_mode=None,  # plain help: importing rich would double the time --help takes
    pretty_exceptions_enable=False,  # errors are rendered by cli.errors, tracebacks only with -v
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command()(project.init)
app.command()(project.add)
app.command()(project.lock)
app.command()(project.outdated)
for command in (
    store.sync,
    store.status,
    store.verify,
    store.path,
    store.gc,
    store.pull,
    remote.push,
    emit.emit,
    emit.probe,
    demo.demo,
):
    app.command()(command)
app.add_typer(bundle_app, name="bundle")
app.add_typer(mirror_app, name="mirror")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"alex-models {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks and debug detail.")
    ] = False,
) -> None:
    """Options before the command. ``--verbose`` is read by the error boundary (cli.errors), which
    runs outside typer, from the command line itself."""


def main(argv: Sequence[str] | None = None, prog_name: str = "alex-models") -> None:
    """Entry point of the ``alex-models`` console script and ``python -m alex_models``."""
    run_guarded(lambda: app(args=None if argv is None else list(argv), prog_name=prog_name), argv)
