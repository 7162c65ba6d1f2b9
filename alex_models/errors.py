"""The one error hierarchy of alex-models.

Every error a user can cause or meet carries a one-line message and, where there is one, a hint
that names the next thing to do. The CLI maps each class to an exit code and prints no traceback
(unless ``ALEX_MODELS_DEBUG=1``)::

    AlexModelsError                 exit 1  anything the user can fix
    ├── UserError                   exit 1  bad input: manifest, lock, mirror root, paths
    ├── UsageError                  exit 2  a command line that does not parse
    ├── IntegrityError              exit 3  bytes that do not match their hash or size
    └── RemoteError                 exit 4  the network or the remote server failed

    Interrupted (a KeyboardInterrupt)  exit 130 for Ctrl-C (SIGINT), 143 for SIGTERM

Code that catches errors catches ``AlexModelsError`` and lets everything else (bugs) surface.
"""

from __future__ import annotations


class AlexModelsError(Exception):
    """Base of every error alex-models raises on purpose.

    ``message`` says what went wrong (naming the file, line or URL involved); ``hint`` says what to
    do about it.
    """

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} (hint: {self.hint})"


class UserError(AlexModelsError, ValueError):
    """Input the user wrote or pointed us at is wrong."""

    exit_code = 1


class UsageError(AlexModelsError, ValueError):
    """A command line that does not parse (an option value out of its grammar)."""

    exit_code = 2


class IntegrityError(AlexModelsError):
    """Bytes on disk or on the wire do not match their recorded hash or size."""

    exit_code = 3


class RemoteError(AlexModelsError, OSError):
    """The network or a remote server failed, or answered something we cannot use."""

    exit_code = 4


class Interrupted(KeyboardInterrupt):
    """The user (Ctrl-C) or the system (SIGTERM) stopped the work. A ``KeyboardInterrupt``, so every
    ``finally`` and ``except KeyboardInterrupt`` that cleans up after Ctrl-C runs for SIGTERM too.

    ``message`` says what was kept and how to go on ("3.2 MB kept; run sync again to resume").
    A use case that stops on an interrupt re-raises it as ``Interrupted`` with its own message and
    the same ``exit_code``.
    """

    def __init__(self, message: str = "interrupted", *, exit_code: int = 130) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def exit_code_of(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM (128 + the signal number, as shells report it)."""
    return interrupt.exit_code if isinstance(interrupt, Interrupted) else 130
