"""The ``alex-models`` command line: a thin layer over the Python API.

Only this package imports typer and rich. Commands import what they need inside their bodies, so
``alex-models --help`` loads neither huggingface_hub nor pydantic nor the HTTP stack; help is
click's plain text, not typer's rich panels, so it loads no rich either (importing rich costs about
as much start-up as the whole plain ``--help``; see docs/benchmarks.md, "Start-up").
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Annotated

import typer

from alex_models import __version__
from alex_models.cli import demo, emit, project, remote, store
from alex_models.cli.bundle import bundle_app
from alex_models.cli.errors import GuardedGroup, run_guarded
from alex_models.cli.mirror import mirror_app

_COMMANDS: dict[str, Callable[..., None]] = {
    command.__name__.replace("_", "-"): command  # the name typer gives it
    for command in (
        project.init,
        project.add,
        project.lock,
        project.outdated,
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
    )
}
_GROUPS = {"bundle": bundle_app, "mirror": mirror_app}


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"alex-models {__version__}")
        raise typer.Exit


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


def _typer(commands: Sequence[str]) -> typer.Typer:
    """The ``alex-models`` app with these of its commands and groups."""
    made = typer.Typer(
        name="alex-models",
        help="A lockfile for local LLM weights: pinned Hugging Face commits, verified files, "
        "llama.cpp config.",
        no_args_is_help=True,
        cls=GuardedGroup,
        rich_markup_mode=None,  # plain help: importing rich would double the time --help takes
        pretty_exceptions_enable=False,  # errors are rendered by cli.errors, tracebacks only with -v
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    made.callback()(_root)
    for name in commands:
        if name in _GROUPS:
            made.add_typer(_GROUPS[name], name=name)
        else:
            made.command()(_COMMANDS[name])
    return made


app = _typer([*_COMMANDS, *_GROUPS])
"""The whole CLI: what help, shell completion and docs/reference/cli.md show."""


def _app_for(args: Sequence[str], prog_name: str) -> typer.Typer:
    """The app that runs ``args``: one with only the command they name, else the whole ``app``.

    Typer builds a click command from every registered command's signature on each run (about
    17 ms of CPU for all of them, a tenth of a no-op sync); a run uses only the one it names: the
    first argument after any ``-v``/``--verbose`` (the root's one option that does not
    act on its own). Anything else (no command, an unknown one, the root's ``--help`` or
    ``--version``, shell completion) gets the whole app: its help, suggestions and commands.
    """
    rest = list(itertools.dropwhile(lambda arg: arg in ("-v", "--verbose"), args))
    completing = f"_{prog_name}_COMPLETE".replace("-", "_").upper() in os.environ  # as typer.core names it
    if not rest or completing or (rest[0] not in _COMMANDS and rest[0] not in _GROUPS):
        return app
    return _typer([rest[0]])


def main(argv: Sequence[str] | None = None, prog_name: str = "alex-models") -> None:
    """Entry point of the ``alex-models`` console script and ``python -m alex_models``."""
    chosen = _app_for(sys.argv[1:] if argv is None else argv, prog_name)
    run_guarded(lambda: chosen(args=None if argv is None else list(argv), prog_name=prog_name), argv)
