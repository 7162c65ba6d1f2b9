"""The app's provider config (``emit alex``): merged into an existing file, keeping its comments."""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from alex_models._yaml import round_trip_yaml
from alex_models.emit import HEADER, PROVIDER, YAML_INDENT, ServerSpec, is_llama_cpp, yaml_text
from alex_models.errors import UserError


def alex_config(spec: ServerSpec, *, base_url: str | None = None, existing: str | None = None) -> str:
    """The app's provider config; merged into ``existing`` YAML keeping its comments and other keys.

    ``runtime.api_key`` is removed: a local provider must never receive a remote key.
    """
    yaml = _yaml_io()
    document = yaml.load(existing) if existing and existing.strip() else None
    kept = ""  # a file of comments only loads as nothing: keep its text above the new keys
    if document is None:
        document = CommentedMap()
        lines = [line.strip() for line in (existing or "").splitlines() if line.strip()]
        if lines and all(line.startswith("#") for line in lines):
            kept = "\n".join(lines) + "\n"
        else:
            document.yaml_set_start_comment(HEADER)
    if not isinstance(document, CommentedMap):
        raise UserError(
            "the app config to merge into is not a YAML mapping", hint="fix it, or emit with --out"
        )
    # Comment lines after a block (the file, the runtime block) stay after it, whatever comes last now.
    at_end = _detach_following(_last_entry(document))
    runtime = document.get("runtime")
    if not isinstance(runtime, CommentedMap):
        runtime = CommentedMap()
        document["runtime"] = runtime
    trailing = _detach_following(_last_entry(runtime))
    leading = _remove(runtime, "api_key")
    if not is_llama_cpp(runtime.get("llm_provider")):  # "llamacpp" and the like are kept as written
        runtime["llm_provider"] = PROVIDER
    runtime["base_url"] = base_url or spec.base_url
    runtime["llm_model"] = spec.name
    _attach_following(_last_entry(runtime), trailing)
    _attach_before_first(runtime, leading)
    _attach_following(_last_entry(document), at_end)
    return kept + yaml_text(document)


# Round-trip comments: ruamel keeps the comment lines that follow an entry on that entry (slot 2 of
# a mapping key, slot 0 of a sequence item) together with its end-of-line comment, and the lines
# after a block on the block's deepest last entry. Removing or appending keys must move them.
_Entry = tuple[CommentedMap | CommentedSeq, Any, int]


def _deepest(node: CommentedMap | CommentedSeq, key: Any) -> _Entry:
    """The entry whose comment slot holds the lines after ``node[key]`` (and all it contains)."""
    value = node[key]
    while isinstance(value, CommentedMap | CommentedSeq) and len(value) > 0:
        node, key = value, (next(reversed(value)) if isinstance(value, CommentedMap) else len(value) - 1)
        value = node[key]
    return node, key, 2 if isinstance(node, CommentedMap) else 0


def _last_entry(mapping: CommentedMap) -> _Entry | None:
    return _deepest(mapping, next(reversed(mapping))) if mapping else None


def _detach_following(entry: _Entry | None) -> str:
    """Take the comment lines after an entry off it (its end-of-line comment stays)."""
    if entry is None:
        return ""
    node, key, slot = entry
    comments = node.ca.items.get(key)
    token = comments[slot] if comments else None
    if token is None:
        return ""
    eol, _, following = token.value.partition("\n")
    if eol.strip():
        token.value = eol + "\n"
    else:
        comments[slot] = None
    return str(following)


def _attach_following(entry: _Entry | None, lines: str) -> None:
    """Put comment lines (as ``_detach_following`` took them) after an entry."""
    if entry is None or not lines:
        return
    node, key, slot = entry
    comments = node.ca.items.setdefault(key, [None, None, None, None])
    if comments[slot] is None:
        comments[slot] = CommentToken("\n" + lines, CommentMark(0), None)
    else:
        comments[slot].value += lines


def _attach_before_first(mapping: CommentedMap, lines: str) -> None:
    if mapping and lines:
        comments = mapping.ca.items.setdefault(next(iter(mapping)), [None, None, None, None])
        comments[1] = [*(comments[1] or []), CommentToken(lines, CommentMark(0), None)]


def _remove(mapping: CommentedMap, key: str) -> str:
    """Remove ``key`` with its end-of-line comment; the comment lines after it stay where they were.

    Returns those lines when ``key`` came first, for the caller to put before the new first key.
    """
    if key not in mapping:
        return ""
    keys = list(mapping)
    following = _detach_following(_deepest(mapping, key))
    del mapping[key]
    mapping.ca.items.pop(key, None)
    index = keys.index(key)
    if index == 0:
        return following
    _attach_following(_deepest(mapping, keys[index - 1]), following)
    return ""


def _yaml_io() -> YAML:
    return round_trip_yaml(**YAML_INDENT)
