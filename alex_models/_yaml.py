"""YAML documents validated by pydantic, with errors that point at file, line and column.

Shared by the manifest and the lock: ruamel.yaml's round-trip loader knows where every key
stands, so a pydantic error's location becomes ``file:line:col`` and an unknown key gets the
closest known one as a hint.
"""

from __future__ import annotations

import difflib
import io
import types
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from alex_models.errors import AlexModelsError

if TYPE_CHECKING:  # ruamel loads when a document is parsed or written: a cached read needs neither
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

E = TypeVar("E", bound=AlexModelsError)
M = TypeVar("M", bound=BaseModel)


def load_document(text: str, filename: str, error: type[AlexModelsError], *, what: str) -> Any:
    from ruamel.yaml import YAML  # noqa: PLC0415 - see TYPE_CHECKING above
    from ruamel.yaml.error import MarkedYAMLError, YAMLError  # noqa: PLC0415

    try:
        document = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark is not None else "1:1"
        problem = (exc.problem or exc.context or "invalid YAML").split("\n")[0]
        raise error(f"{filename}:{where}: {problem}", hint="fix the YAML syntax") from None
    except YAMLError as exc:
        raise error(f"{filename}: invalid YAML: {str(exc).splitlines()[0]}") from None
    except (AttributeError, KeyError, TypeError, ValueError, RecursionError) as exc:
        # ruamel raises these, not a YAMLError, for some malformed input: "!!int x", "a: !!set",
        # nesting thousands of levels deep.
        problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"{filename}: invalid YAML: {problem}", hint="fix the YAML syntax") from None
    if not isinstance(document, Mapping):
        raise error(f"{filename}:1:1: expected a mapping with {what}")
    return document


def validate_document(model: type[M], document: Any, filename: str, error: type[E]) -> M:
    """``document`` (from ``load_document``) as ``model``, or ``error`` naming file:line:col."""
    try:
        return model.model_validate(plain_document(document))
    except ValidationError as exc:
        raise _validation_error(exc, model, document, filename, error) from None


def plain_document(node: Any) -> Any:
    """ruamel's round-trip types as plain dicts, lists and scalars, for strict validation (and for
    ``_doccache``, which keeps this form: bump its ``_FORMAT`` if this function changes)."""
    if isinstance(node, Mapping):
        # A mapping used as a key ("? {a: 1}") stays ruamel's hashable key type; validation refuses it.
        return {
            (k if isinstance(k, Mapping) else plain_document(k)): plain_document(v) for k, v in node.items()
        }
    if isinstance(node, list):
        return [plain_document(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


def position(document: Any, loc: Sequence[int | str]) -> tuple[int, int]:
    """1-based line and column of the deepest key of ``loc`` that exists in the YAML document."""
    line, col = 0, 0
    node = document
    for key in loc:
        lc = getattr(node, "lc", None)
        if isinstance(node, Mapping) and key in node:
            found = lc.key(key) if lc is not None else None  # None where ruamel kept no marks (!!omap)
            if found is not None:
                line, col = found
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            found = lc.item(key) if lc is not None else None
            if found is not None:
                line, col = found
            node = node[key]
        else:
            break
    return line + 1, col + 1


def _dotted(loc: Sequence[int | str]) -> str:
    return ".".join(f"[{part}]" if isinstance(part, int) else str(part) for part in loc).replace(".[", "[")


MAX_PROBLEMS = 10
"""Problems listed in one error; the rest are counted (a file of garbage should not fill the screen)."""


def _validation_error(
    exc: ValidationError, root: type[BaseModel], document: Any, filename: str, error: type[E]
) -> E:
    """One line per problem, each ``file:line:col: what``. A lone problem keeps its hint apart (the
    CLI prints it as ``hint:``); among several, each line carries its own hint, in parentheses."""
    # dict.fromkeys: a union field reports once per member, often in the same words.
    problems = list(
        dict.fromkeys(_problem(e, root, document, filename) for e in exc.errors(include_url=False))
    )
    if len(problems) == 1:
        message, hint = problems[0]
        return error(message, hint=hint)
    lines = [message if hint is None else f"{message} ({hint})" for message, hint in problems[:MAX_PROBLEMS]]
    if len(problems) > MAX_PROBLEMS:
        lines.append(f"{filename}: and {len(problems) - MAX_PROBLEMS} more problems")
    return error("\n".join(lines))


def _problem(
    item: ErrorDetails, root: type[BaseModel], document: Any, filename: str
) -> tuple[str, str | None]:
    """One pydantic error as ``file:line:col: what`` and a hint."""
    loc = [part for part in item["loc"] if isinstance(part, int | str)]
    line, col = position(document, loc)
    where = f"{filename}:{line}:{col}"
    kind = item["type"]
    if kind == "extra_forbidden":
        key, parent = str(loc[-1]), loc[:-1]
        known = _known_keys(root, parent)
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        inside = f" in {_dotted(parent)}" if parent else ""
        hint = f"did you mean {close[0]!r}?" if close else f"known keys here: {', '.join(known)}"
        return f"{where}: unknown key {key!r}{inside}", hint
    if kind == "missing":
        inside = f" in {_dotted(loc[:-1])}" if len(loc) > 1 else ""
        version_hint = "start the file with 'version: 1'" if loc == ["version"] else None
        return f"{where}: missing key {str(loc[-1])!r}{inside}", version_hint
    message = item["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") or kind in ("literal_error", "enum"):
        message = f"{message}, got {_describe(item.get('input'))}"
    subject = f"{_dotted(loc)}: " if loc else ""
    return f"{where}: {subject}{message}", None


def _describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _known_keys(root: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names allowed at ``loc``, found by walking the pydantic models along it."""
    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return []
            annotation = field.annotation
        elif get_origin(annotation) is dict:
            annotation = get_args(annotation)[1]
        elif get_origin(annotation) is list:
            annotation = get_args(annotation)[0]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """``X | None`` and ``Annotated[X, ...]`` as ``X``."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def with_entry_appended(text: str, mapping: CommentedMap, key: str, value: Mapping[str, Any]) -> str | None:
    """``text`` with ``key: value`` written right after the last entry of ``mapping``, a non-empty
    block mapping loaded from ``text`` by ``load_document``; None where its layout is unknown.

    Done on the text, not by ruamel: ruamel keeps the comments that follow the last entry attached
    to it (a commented-out example, or the rest of the file), and would write a new entry after
    them. Lines indented under the last key stay with it; comments after them follow the new entry.
    """
    last = list(mapping)[-1]
    found = mapping.lc.key(last)
    if found is None or mapping.fa.flow_style():
        return None
    key_line, key_col = found
    lines = text.splitlines(keepends=True)
    end = key_line  # the last line of the last entry: everything indented under its key
    for number in range(key_line + 1, len(lines)):
        stripped = lines[number].lstrip(" ")
        indent = len(lines[number]) - len(stripped)
        if indent > key_col and stripped.strip():
            end = number
        elif stripped.strip() and not stripped.startswith("#"):
            break  # the next key: a comment at the margin does not end the entry, a key does
    block = "".join(
        " " * key_col + line if line.strip() else line
        for line in dump_yaml({key: dict(value)}).splitlines(True)
    )
    head = "".join(lines[: end + 1])
    return (head if head.endswith("\n") else head + "\n") + block + "".join(lines[end + 1 :])


def round_trip_yaml(*, sequence: int = 2, offset: int = 0) -> YAML:
    """The one YAML set-up that writes: round-trip (comments kept), lines never folded (paths and
    URLs stay whole), 2-space mappings; lists indented ``sequence`` with the dash at ``offset``."""
    from ruamel.yaml import YAML  # noqa: PLC0415 - see TYPE_CHECKING above

    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=sequence, offset=offset)
    return yaml


def dump_yaml(document: object, *, sequence: int = 2, offset: int = 0) -> str:
    """``document`` as YAML text, written by ``round_trip_yaml``."""
    out = io.StringIO()
    round_trip_yaml(sequence=sequence, offset=offset).dump(document, out)
    return out.getvalue()
