"""``docs/reference/cli.md``, rendered from the typer app itself so the reference cannot drift.

Regenerate it after any change to a command, option or help text::

    python -m alex_models.cli.reference > docs/reference/cli.md

``tests/test_docs.py`` fails while the checked-in file differs from what this prints.

Each row is the parameter's own help record (what ``--help`` shows: names, value type, help,
default, range, environment variable), so the page says exactly what the terminal says, without
terminal width or colours.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import typer
from typer.core import TyperCommand, TyperGroup

PROG_NAME = "alex-models"
REGENERATE = "python -m alex_models.cli.reference > docs/reference/cli.md"

Command = TyperCommand | TyperGroup

# Characters Markdown would read as a table cell break, an HTML tag, emphasis or code.
_MARKDOWN_SPECIAL = re.compile(r"([\\|<*`])")


@dataclass(frozen=True)
class Entry:
    """One command of the tree: its words after the program name, and its context for rendering."""

    words: tuple[str, ...]
    command: Command
    context: typer.Context


def walk(app: typer.Typer, prog_name: str = PROG_NAME) -> list[Entry]:
    """Every visible command of ``app``, the root first, each group before its subcommands."""
    root = _command(typer.main.get_command(app))
    # Context settings (the -h alias of --help) are applied by make_context; mirror that here.
    context = typer.Context(root, info_name=prog_name, **root.context_settings)
    return list(_walk(root, context, ()))


def _walk(command: Command, context: typer.Context, words: tuple[str, ...]) -> list[Entry]:
    found = [Entry(words, command, context)]
    if isinstance(command, TyperGroup):
        for name in command.list_commands(context):
            sub = _command(command.get_command(context, name))
            if not sub.hidden:
                found += _walk(sub, typer.Context(sub, info_name=name, parent=context), (*words, name))
    return found


def _command(command: object) -> Command:
    if not isinstance(command, TyperCommand | TyperGroup):
        raise TypeError(f"not a typer command: {command!r}")
    return command


def render(entries: list[Entry]) -> str:
    """The Markdown page: the root's usage and options, an index of commands, then each command."""
    root, commands = entries[0], entries[1:]
    # The context's list keeps the declared order; the help option's own names come from a set.
    help_names = ", ".join(f"`{name}`" for name in root.context.help_option_names)
    lines = [
        "# CLI reference",
        "",
        f"<!-- Generated from the typer app by `{REGENERATE}`; do not edit by hand. -->",
        "",
        *_describe(root),
        f"Every command also takes {help_names}.",
        "",
        "| command | what it does |",
        "| --- | --- |",
        *(f"| [`{_title(e)}`](#{_anchor(e)}) | {_escape(_summary(e.command))} |" for e in commands),
        "",
    ]
    for entry in commands:
        lines += [f"## `{_title(entry)}`", "", *_describe(entry)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _describe(entry: Entry) -> list[str]:
    command, context = entry.command, entry.context
    usage = " ".join([context.command_path, *command.collect_usage_pieces(context)])
    lines = ["```", usage, "```", ""]
    if command.help:
        lines += [command.help.strip(), ""]
    for kind, title in (("argument", "Arguments"), ("option", "Options")):
        records = [
            record
            for param in command.params
            if param.param_type_name == kind and (record := param.get_help_record(context))
        ]
        if records:
            lines += [f"{title}:", "", f"| {kind} | description |", "| --- | --- |"]
            lines += [f"| `{_escape_code(name)}` | {_escape(text)} |" for name, text in records]
            lines.append("")
    return lines


def _title(entry: Entry) -> str:
    return " ".join((PROG_NAME, *entry.words))


def _anchor(entry: Entry) -> str:
    # GitHub's heading slug: lowercase, spaces to dashes, other punctuation dropped.
    return re.sub(r"[^a-z0-9 _-]", "", _title(entry).lower()).replace(" ", "-")


def _summary(command: Command) -> str:
    return (command.help or "").strip().split("\n\n", 1)[0].replace("\n", " ")


def _escape(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def _escape_code(text: str) -> str:
    # Inside a code span only the cell separator needs escaping (GitHub tables).
    return text.replace("|", "\\|")


def main() -> None:
    """Print the reference of ``alex-models`` on stdout."""
    from alex_models.cli import app

    sys.stdout.write(render(walk(app)))


if __name__ == "__main__":
    main()
