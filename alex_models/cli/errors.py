"""The CLI's single error boundary: an ``AlexModelsError`` becomes one line, a hint and an exit code.

Exit codes (DESIGN.md): 0 ok, 1 user error, 2 usage, 3 integrity failure, 4 network or remote
failure. Tracebacks are shown only with ``-v``/``--verbose`` or ``ALEX_MODELS_DEBUG=1``.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence

from alex_models.errors import AlexModelsError


def _debug(argv: Sequence[str] | None) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return os.environ.get("ALEX_MODELS_DEBUG", "") not in ("", "0") or "-v" in args or "--verbose" in args


def run_guarded(command: Callable[[], object], argv: Sequence[str] | None) -> None:
    """Run the CLI; turn our errors into a message on stderr and their exit code."""
    try:
        command()
    except AlexModelsError as exc:
        if _debug(argv):
            traceback.print_exc()
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
