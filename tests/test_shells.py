"""Emitted command lines read back by the shell they are written for.

sh: the real ``sh -c`` runs the line, with a ``llama-server`` on ``PATH`` that prints its argv.
PowerShell: no ``pwsh`` can be installed here (Debian main has none, and the PyPI and npm packages
named after it wrap or download one), so the lines are read by ``powershell_words`` below, a
reference reader of PowerShell's argument mode written from its language specification.
cmd.exe: ``cmd_argv`` below does what cmd.exe does to a line, then what the Microsoft C runtime
(``CommandLineToArgvW``) does to the command line the program gets, from their documentation.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from alex_models import api
from alex_models.emit import ServerSpec
from alex_models.emit import llama_cpp as render
from alex_models.emit.flags import ServerFlags
from alex_models.emit.shells import POWERSHELL_SINGLE_QUOTES, command_line
from alex_models.errors import UserError
from alex_models.formats import Shell
from alex_models.manifest import ManifestError, Runtime, parse_manifest

FLAGS = ServerFlags()
# What a path or a setting may hold: spaces, both quotes, $, backticks, %, !, and non-ASCII.
AWKWARD = 'it\'s a "model" for $HOME `id` 100% wow! é 日本 🦙'
CMD_SAFE = AWKWARD.replace("100% wow!", "all & (more) | <less> ^caret")  # cmd refuses % and !


def spec(text: str, root: str = "/store") -> ServerSpec:
    """A model whose paths, chat template and extra args all carry ``text``; Windows paths with a
    ``C:\\`` root."""
    sep = "\\" if root.startswith("C:") else "/"
    return ServerSpec(
        name="awkward",
        model=Path(f"{root}{sep}dir with {text}{sep}model.gguf"),
        mmproj=None,
        draft=None,
        runtime=Runtime(
            ctx_size=4096,
            chat_template=text,
            args=[
                "--system-prompt",
                text,
                "--empty",
                "",
                "--folder",
                "a folder\\",
                "--quoted",
                'a\\"b\\\\"c',
                "--odd",
                'one " & two',
                "--tail",  # last: llama-swap takes a line's last '\\' for a continuation
                "ends\\",
            ],
        ),
        chat_template_file=Path(f"{root}{sep}{text}.jinja"),
    )


# -- sh ------------------------------------------------------------------------------------------------


@pytest.mark.posix("sh, and a script run by its #! line")
def test_sh_runs_the_llama_server_line_as_exactly_its_argv(tmp_path: Path) -> None:
    printer = tmp_path / "llama-server"
    printer.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    printer.chmod(printer.stat().st_mode | stat.S_IXUSR)
    awkward = spec(AWKWARD)

    line = render.llama_server(awkward, FLAGS, Shell.SH)
    ran = subprocess.run(
        ["sh", "-c", line],
        env={**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        check=True,
    )

    assert json.loads(ran.stdout) == render.server_argv(awkward, FLAGS)[1:]
    assert line == render.llama_server(awkward, FLAGS)  # sh is the renderer's default


# -- PowerShell ------------------------------------------------------------------------------------------

# The PowerShell Language Specification 3.0, §2.3.5.2.5 (verbatim-string-literal): a single-quoted
# string holds every character as written, except the single-quote-characters (U+0027 and
# U+2018-U+201B), any of which closes it, and two of which in a row stand for one.
# In argument mode (about_Parsing) a bare word is passed as written when it has none of the
# characters that start an expression, a variable, a comment, an array or another statement, and
# does not read as a number: 1e3, 0x10, 1kb, 1.5 are converted, a decimal integer is not changed.
_PS_SPECIAL = set(" \t\n'\"`$@#;,(){}|&<>%") | set(POWERSHELL_SINGLE_QUOTES)
_PS_NUMBER = re.compile(r"-?(0x[0-9a-f]+|[0-9]+(\.[0-9]*)?(e[+-]?[0-9]+)?)(kb|mb|gb|tb|pb|[ludn])?", re.I)
_PS_PLAIN_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")


def powershell_words(line: str) -> list[str]:
    """What a native program started by this PowerShell line gets: its path, then its arguments."""
    assert line.startswith("& "), "a program is run through the call operator"
    words: list[str] = []
    at = 2
    while at < len(line):
        if line[at] == " ":
            at += 1
        elif line[at] in POWERSHELL_SINGLE_QUOTES:
            word, at = [], at + 1
            while True:
                if line[at] in POWERSHELL_SINGLE_QUOTES:
                    if at + 1 < len(line) and line[at + 1] in POWERSHELL_SINGLE_QUOTES:
                        word.append(line[at])
                        at += 2
                        continue
                    break
                word.append(line[at])
                at += 1
            words.append("".join(word))
            at += 1
            assert at == len(line) or line[at] == " ", "a quoted string is a word of its own"
        else:
            end = line.find(" ", at) if " " in line[at:] else len(line)
            bare = line[at:end]
            assert not _PS_SPECIAL & set(bare), f"{bare!r} would not be passed as written"
            assert not _PS_NUMBER.fullmatch(bare) or _PS_PLAIN_INTEGER.fullmatch(bare), bare
            assert bare != "--%", "the stop-parsing token"
            words.append(bare)
            at = end
    return words


def test_powershell_reads_the_llama_server_line_back_as_its_argv() -> None:
    awkward = spec(AWKWARD, root="C:\\Users\\José\\.alex")

    line = render.llama_server(awkward, FLAGS, Shell.POWERSHELL).removesuffix("\n")

    assert powershell_words(line) == render.server_argv(awkward, FLAGS)
    assert line.startswith("& llama-server -m 'C:\\Users\\José\\.alex\\dir with it''s a \"model\" for $HOME")


@pytest.mark.parametrize(
    "arg",
    [
        "it\u2019s",
        "\u2018a\u2019 \u201ab\u201b",
        "1e3",
        "0x10",
        "1kb",
        "1.5",
        "--%",
        "@args",
        "#x",
        "a,b",
        "-1",
        "007",
        "",
    ],
)
def test_powershell_quotes_what_it_would_otherwise_read_differently(arg: str) -> None:
    program = "C:\\Program Files\\llama.cpp\\llama-server.exe"

    line = command_line([program, "--value", arg], Shell.POWERSHELL)

    assert powershell_words(line) == [program, "--value", arg]
    assert line.startswith("& 'C:\\Program Files\\llama.cpp\\llama-server.exe' --value ")


# -- cmd.exe ---------------------------------------------------------------------------------------------

_CMD_META = set("&|<>()")


def cmd_argv(line: str) -> list[str]:
    """What a program started by this cmd.exe line gets as argv.

    cmd.exe (``cmd /?``, ``set /?``): ``%`` expands variables and ``!`` (with delayed expansion)
    too, inside quotes or not. It toggles a quoted state at every ``"``; outside it, ``^`` escapes
    the next character and ``& | < > ( )`` separate, pipe, redirect or group commands. It passes the
    rest of the line, carets removed, to the program as its command line.

    The Microsoft C runtime ("Parsing C command-line arguments", the rules CommandLineToArgvW
    follows): the program name ends at the next ``"`` when it starts with one, else at whitespace,
    with no escapes. Then arguments are separated by spaces and tabs; ``"`` starts or ends a quoted
    stretch where whitespace is kept; 2n backslashes before a ``"`` give n backslashes and the
    ``"`` quotes, 2n+1 give n backslashes and a literal ``"``; other backslashes are literal.
    ``""`` inside a quoted stretch is read differently by different runtime versions: never
    produced, so refused here.
    """
    assert not set("%!\n") & set(line), "cmd.exe expands these, or ends the command"
    passed, quoted, at = [], False, 0
    while at < len(line):
        char = line[at]
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "^":
            at += 1
            char = line[at]
        elif not quoted:
            assert char not in _CMD_META, f"cmd.exe acts on {char!r} at {at} of {line!r}"
        passed.append(char)
        at += 1
    return windows_argv("".join(passed), program=True)


def windows_argv(command: str, *, program: bool) -> list[str]:
    """The Microsoft C runtime's split of a command line (see ``cmd_argv``)."""
    argv: list[str] = []
    at = 0
    if program:  # up to the next quote if it starts with one, else up to whitespace; no escapes
        end = command.index('"', 1) + 1 if command.startswith('"') else len(command.split(" ", maxsplit=1)[0])
        argv.append(command[:end].strip('"'))
        at = end
    while True:
        while at < len(command) and command[at] in " \t":
            at += 1
        if at == len(command):
            return argv
        word, at = _windows_word(command, at)
        argv.append(word)


def _windows_word(command: str, at: int) -> tuple[str, int]:
    word: list[str] = []
    quoted = False
    while at < len(command) and (quoted or command[at] not in " \t"):
        slashes = len(command[at:]) - len(command[at:].lstrip("\\"))
        if slashes:
            at += slashes
            before_quote = command[at : at + 1] == '"'
            word.append("\\" * (slashes // 2 if before_quote else slashes))
            if before_quote and slashes % 2:
                word.append('"')
                at += 1
        elif command[at] == '"':
            assert not (quoted and command[at + 1 : at + 2] == '"'), '"" in a quoted stretch'
            quoted = not quoted
            at += 1
        else:
            word.append(command[at])
            at += 1
    return "".join(word), at


def test_cmd_reads_the_llama_server_line_back_as_its_argv() -> None:
    awkward = spec(CMD_SAFE, root="C:\\Users\\José\\.alex")

    line = render.llama_server(awkward, FLAGS, Shell.CMD).removesuffix("\n")

    assert cmd_argv(line) == render.server_argv(awkward, FLAGS)


def test_cmd_line_runs_a_program_whose_path_has_spaces() -> None:
    argv = ["C:\\Program Files\\llama.cpp\\llama-server.exe", "-m", "D:\\models\\a&b\\x.gguf", "--x", "a\\"]

    line = command_line(argv, Shell.CMD)

    assert line == '"C:\\Program Files\\llama.cpp\\llama-server.exe" -m "D:\\models\\a&b\\x.gguf" --x "a\\\\"'
    assert cmd_argv(line) == argv


@pytest.mark.parametrize(
    ("text", "what"),
    [("100%", "a '%'"), ("wow!", "a '!'"), ("two\nlines", "a newline"), ("nul\0", "a NUL")],
)
def test_cmd_refuses_what_cmd_expands_or_cannot_pass_naming_the_argument(text: str, what: str) -> None:
    with pytest.raises(UserError) as raised:
        render.llama_server(spec(text), FLAGS, Shell.CMD)

    message = str(raised.value)
    assert message.startswith(f"cannot write -m {str(spec(text).model)!r} for cmd.exe: it has {what}")
    assert raised.value.hint == "emit it with --shell powershell"


# -- the other formats with a command line ------------------------------------------------------------


def test_llama_swap_on_windows_quotes_cmd_for_llama_swaps_windows_split() -> None:
    """llama-swap joins the lines ending in '\\' and, on Windows, splits by the C runtime's rules."""
    awkward = spec(AWKWARD, root="C:\\Users\\José\\.alex")

    for shell in (Shell.POWERSHELL, Shell.CMD):
        text = render.llama_swap([awkward], FLAGS, shell)
        cmd = text.split("cmd: |\n", 1)[1].split("\n    checkEndpoint", 1)[0]
        joined = " ".join(line.strip().removesuffix("\\") for line in cmd.splitlines())

        assert windows_argv(joined, program=False) == render.server_argv(awkward, FLAGS, port="${PORT}")


def test_the_env_files_note_quotes_the_extra_args_for_the_shell() -> None:
    args = spec(AWKWARD).runtime.args
    plain = ServerSpec("plain", Path("/store/plain.gguf"), None, None, Runtime(args=args), None)

    note = render.llama_server_env(plain, FLAGS, Shell.POWERSHELL).splitlines()[-1]

    assert note.startswith("# pass these on the command line too (no LLAMA_ARG_* form): ")
    assert powershell_words("& x " + note.split(": ", 1)[1]) == ["x", *args]


# -- which shell ---------------------------------------------------------------------------------------


def test_the_default_shell_is_powershell_on_windows_and_sh_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "name", "posix")  # as on Linux and macOS, whichever this is
    assert api.default_shell() is Shell.SH
    monkeypatch.setattr(os, "name", "nt")
    assert api.default_shell() is Shell.POWERSHELL


def test_an_emit_entry_takes_a_shell_and_refuses_an_unknown_one() -> None:
    text = "{version: 1, models: {}, emit: [{format: llama-server, path: run.txt, shell: %s}]}"

    assert parse_manifest(text % "cmd").emit[0].shell is Shell.CMD
    with pytest.raises(ManifestError, match=r"emit\[0\]\.shell|emit\.0\.shell"):
        parse_manifest(text % "fish")
