"""Command lines for the shell that will read them: POSIX sh, PowerShell, or Windows' cmd.exe.

Pure: an argv in, one line of text out, or a ``UserError`` naming the argument that the shell
cannot be given safely.

- sh: ``shlex.quote`` (single quotes, ``'`` written as ``'"'"'``).
- PowerShell: the program through the call operator ``&``; every argument that is not a plain
  option name, word or integer in single quotes, where nothing is special but the single-quote
  characters (``'`` and the typographic U+2018-U+201B, which PowerShell also takes for one), each
  written twice. Bare numbers-with-suffixes (``1kb``, ``0x10``, ``1e3``) would be converted by
  PowerShell, and ``--%``, ``@…``, ``#…``, ``a,b`` mean other things: only names and plain
  integers stay bare. PowerShell 7.3 and later pass each argument to the program as it is;
  Windows PowerShell 5.1 drops empty ones and does not escape ``"`` inside one.
- cmd: each argument as the Microsoft C runtime (``CommandLineToArgvW``) splits it back: double
  quotes around it, backslashes doubled before a quote, ``"`` as ``\\"``; then cmd's own
  metacharacters (``& | < > ^ ( )``) wherever cmd itself sees them outside a quoted stretch get a
  ``^``. ``%`` (variable expansion, even in quotes), ``!`` (delayed expansion), newlines and NUL
  cannot be passed through cmd safely: refused.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from alex_models.errors import UserError
from alex_models.formats import Shell

# PowerShell's single-quote characters: U+0027 and the four typographic ones its tokenizer accepts.
POWERSHELL_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
_POWERSHELL_BARE_RE = re.compile(r"--?[A-Za-z][A-Za-z0-9-]*|-?(0|[1-9][0-9]*)|[A-Za-z][A-Za-z0-9_-]*")
# Not ending in '\': llama-swap reads a line's last backslash as a line continuation.
_WINDOWS_BARE_RE = re.compile(r"[A-Za-z0-9_\-.:/\\=+]*[A-Za-z0-9_\-.:/=+]")
_CMD_META = "&|<>^()"
_CMD_REFUSED = {
    "%": "a '%', which cmd.exe expands even inside quotes",
    "!": "a '!', which cmd.exe expands even inside quotes when delayed expansion is on",
    "\n": "a newline, which ends a cmd.exe command",
    "\r": "a carriage return, which cmd.exe drops",
    "\0": "a NUL, which no Windows command line can hold",
}


def command_line(argv: Sequence[str], shell: Shell) -> str:
    """``argv`` as one line that ``shell`` runs as exactly that program with exactly those arguments."""
    program, *args = argv
    if shell is Shell.POWERSHELL:
        head = f"& {powershell_quote(program)}"  # '&': a quoted program name is otherwise just a string
    elif shell is Shell.CMD and '"' in program:  # the C runtime splits the program name without escapes
        raise UserError(f"cannot write the program {program!r} for cmd.exe: it has a '\"'")
    else:
        head = arguments([program], shell)
    return f"{head} {arguments(args, shell)}" if args else head


def arguments(args: Sequence[str], shell: Shell) -> str:
    """Arguments, without the program, as ``shell`` reads them back."""
    if shell is Shell.POWERSHELL:
        return " ".join(powershell_quote(arg) for arg in args)
    if shell is Shell.CMD:
        return _cmd_escape(" ".join(windows_quote(arg) for arg in _cmd_checked(args)))
    return shlex.join(args)


def powershell_quote(arg: str) -> str:
    """One argument as PowerShell reads it back: bare when that is unambiguous, else single-quoted."""
    if _POWERSHELL_BARE_RE.fullmatch(arg):
        return arg
    return "'" + re.sub(f"([{POWERSHELL_SINGLE_QUOTES}])", r"\1\1", arg) + "'"


def windows_quote(arg: str) -> str:
    """One argument as the Microsoft C runtime (``CommandLineToArgvW``) splits it back.

    No shell is involved here: ``command_line`` adds what cmd.exe itself needs.
    """
    if _WINDOWS_BARE_RE.fullmatch(arg):
        return arg
    # Backslashes are literal except before a '"': there, 2n of them give n, and 2n+1 give n and a '"'.
    quoted = re.sub(r'(\\*)"', lambda m: m[1] * 2 + '\\"', arg)
    trailing = len(arg) - len(arg.rstrip("\\"))  # they precede the closing quote: doubled too
    return '"' + quoted + "\\" * trailing + '"'


def _cmd_checked(argv: Sequence[str]) -> Sequence[str]:
    for index, arg in enumerate(argv):
        why = next((why for char, why in _CMD_REFUSED.items() if char in arg), None)
        if why is not None:
            option = argv[index - 1] if index > 0 and argv[index - 1].startswith("-") else None
            named = f"{option} {arg!r}" if option else repr(arg)
            raise UserError(
                f"cannot write {named} for cmd.exe: it has {why}",
                hint="emit it with --shell powershell",
            )
    return argv


def _cmd_escape(line: str) -> str:
    """``^`` before each metacharacter cmd would act on: cmd toggles its quoted state at every
    ``"``, escaped for the C runtime or not, so a ``\\"`` can leave the rest of an argument exposed."""
    out: list[str] = []
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in _CMD_META:
            out.append("^")
        out.append(char)
    return "".join(out)
