"""llama.cpp's preset INI (``llama-server --models-preset``, a repo's ``preset.ini``), read as llama.cpp
reads it. Pure: text in, sections out.

The grammar is common/preset.cpp's (llama.cpp as vendored by llama-cpp-python 0.3.36): each line is
a ``[section]`` header, a ``key = value`` pair, a ``;`` or ``#`` comment, or blank; a value ends at a
comment character or trailing blanks; keys before any header belong to section ``default``; a
repeated header starts its section afresh; ``version`` is reserved. llama.cpp rejects the whole
file without saying where; this names the line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alex_models.errors import UserError

GLOBAL = "*"
"""The section every model of the file gets, below its own."""
DEFAULT = "default"

_HEADER = re.compile(r"\[[ \t]*(?P<name>[^\]]+)\][ \t]*(?:[;#].*)?")
_PAIR = re.compile(r"(?P<key>[a-zA-Z_][a-zA-Z0-9_.-]*)[ \t]*=[ \t]*(?P<value>.*?)[ \t]*(?:[;#].*)?")
_BLANK_OR_COMMENT = re.compile(r"[ \t]*(?:[;#].*)?")
_TAG = re.compile(r"[-.]([A-Z0-9_]+)$", re.IGNORECASE)
_LINES = re.compile(r"\r\n|\n|\r")


class PresetError(UserError):
    """A preset INI llama.cpp would refuse, or one that names files the lock should supply."""


@dataclass(frozen=True)
class Setting:
    """One ``key = value`` of a section, with the line it is on."""

    key: str
    value: str
    line: int


def parse(text: str, filename: str) -> dict[str, dict[str, Setting]]:
    """Sections by name (``*``, ``default``, a model's), each its settings by key, in file order."""
    sections: dict[str, dict[str, Setting]] = {}
    current = DEFAULT
    for number, line in enumerate(_LINES.split(text), start=1):
        header = _HEADER.fullmatch(line)
        pair = None if header else _PAIR.fullmatch(line)
        if header is not None:
            current = _section_name(header["name"])
            sections[current] = {}
        elif pair is not None:
            if pair["key"] != "version":
                sections.setdefault(current, {})[pair["key"]] = Setting(pair["key"], pair["value"], number)
        elif not _BLANK_OR_COMMENT.fullmatch(line):
            raise PresetError(
                f"{filename}:{number}: llama.cpp cannot read this line of a preset: {line.strip()[:80]!r}",
                hint="each line is '[section]', 'key = value', a ';' or '#' comment, or blank",
            )
    return sections


def _section_name(name: str) -> str:
    """llama.cpp's spelling of a section name: the tag after the last ``:`` upper-cased (canonical_tag)."""
    if name in (GLOBAL, DEFAULT) or ":" not in name:
        return name
    head, _, tag = name.rpartition(":")
    found = _TAG.search(tag)
    return f"{head}:{(found[1] if found else tag).upper()}"


def is_truthy(value: str) -> bool:
    """llama.cpp's ``common_arg_utils::is_truthy``."""
    return value in ("on", "enabled", "true", "1")


def is_falsey(value: str) -> bool:
    """llama.cpp's ``common_arg_utils::is_falsey``."""
    return value in ("off", "disabled", "false", "0")
