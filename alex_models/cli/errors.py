"""The CLI's single error boundary: an ``AlexModelsError`` becomes one line, a hint and an exit code.

Exit codes (DESIGN.md): 0 ok, 1 user error, 2 usage, 3 integrity failure, 4 network or remote
failure. Tracebacks are shown only with ``-v``/``--verbose`` or ``ALEX_MODELS_DEBUG=1``. With
``--json`` the error is also printed on stdout as a JSON object of kind ``error``, so a script
reading stdout always gets one whole object (the stderr lines stay for the person watching).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

from typer.core import TyperCommand, TyperGroup

from alex_models._platform import termination_signals
from alex_models.cli.render import REQUESTED, labelled, print_json
from alex_models.errors import AlexModelsError, Interrupted, exit_code_of


def _debug(argv: Sequence[str] | None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return os.environ.get("ALEX_MODELS_DEBUG", "") not in ("", "0") or "-v" in args or "--verbose" in args


def run_guarded(command: Callable[[], object], argv: Sequence[str] | None) -> None:
    """Run the CLI; turn our errors into a message on stderr and their exit code."""
    REQUESTED.json = False
    try:
        with _sigterm_interrupts():
            command()
    except AlexModelsError as exc:
        if _debug(argv):
            traceback.print_exc()
        if REQUESTED.json:
            print_json("error", {"error": _error_json(exc)})
        labelled("error", exc.message)
        if exc.hint:
            labelled("hint", exc.hint)
        raise SystemExit(exc.exit_code) from None
    except OSError as exc:
        # What the system refused that no use case foresaw (a store under a file, a disk error, a
        # file another program holds on Windows): still one line naming the path, not a traceback.
        if _debug(argv):
            traceback.print_exc()
        where = "".join(f": {name}" for name in (exc.filename, exc.filename2) if name is not None)
        labelled("error", f"{exc.strerror or exc}{where}")
        labelled("hint", "check that path: its folders, permissions, free space, or a program holding it")
        raise SystemExit(1) from None
    except _Stopped as stopped:
        interrupt = stopped.interrupt
        message = interrupt.message if isinstance(interrupt, Interrupted) else "interrupted"
        print(message, file=sys.stderr, flush=True)
        raise SystemExit(exit_code_of(interrupt)) from None


class _Stopped(BaseException):
    """An interrupt on its way out of typer, which would turn a ``KeyboardInterrupt`` into a silent
    exit 130 (for SIGTERM too) before ``run_guarded`` could say what was kept."""

    def __init__(self, interrupt: KeyboardInterrupt) -> None:
        super().__init__()
        self.interrupt = interrupt


def _escaping_typer(invoke: Callable[[Any], Any], ctx: Any) -> Any:
    try:
        return invoke(ctx)
    except KeyboardInterrupt as exc:
        raise _Stopped(exc) from None


class GuardedGroup(TyperGroup):
    """The command group: an interrupt in any command reaches ``run_guarded`` whole."""

    def invoke(self, ctx: Any) -> Any:  # a typer.Context; typed Any, as typer's vendored click types it
        return _escaping_typer(super().invoke, ctx)


class GuardedCommand(TyperCommand):
    """A command run on its own (``python -m alex_models.mirror``), guarded as the group is."""

    def invoke(self, ctx: Any) -> Any:  # a typer.Context; typed Any, as typer's vendored click types it
        return _escaping_typer(super().invoke, ctx)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM (and Windows's Ctrl-Break) raises ``Interrupted`` (exit 128 + the signal) in the main
    thread, as Ctrl-C raises ``KeyboardInterrupt``: a service manager's stop then checkpoints and
    cleans up like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (an embedding test runner)
        return

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("terminated", exit_code=128 + signum)

    previous = {signum: signal.signal(signum, terminate) for signum in termination_signals()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _error_json(exc: AlexModelsError) -> dict[str, object]:
    """The stable fields of an error: its class name (the code to branch on) and exit code."""
    return {"type": type(exc).__name__, "exit_code": exc.exit_code, "message": exc.message, "hint": exc.hint}
