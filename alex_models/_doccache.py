"""YAML documents parsed before, kept between runs by the SHA256 of their bytes.

ruamel.yaml's round-trip loader is most of what reading ``models.yaml`` and ``models.lock`` costs
(importing it and parsing a 10-model lock and its manifest took 30 ms of a no-op sync's 0.24 s of
CPU), and those files rarely change between two commands. So the plain structure a file parsed
into (dicts, lists, scalars: what pydantic validates) is kept in the user's cache folder
(``settings.cache_home``), named by the SHA256 of the file's bytes, and the next read of the same
bytes validates that structure without loading ruamel. Validation itself always runs: the cache
saves the parse, never a check.

An entry is one file, ``documents/<sha256 of the YAML's bytes>.json``: a first line with the
SHA256 of the rest, then JSON. Any change of the YAML's bytes names another entry; an entry that
does not match its own hash, its name or this alex-models is not used, and the next read writes
it anew. Entries are written whole (a temporary file renamed over), so a reader never sees half
of one; two writers of the same name write the same bytes. Writing is best effort: a cache folder
that cannot be written costs the parse, nothing else. The newest ``_KEPT`` entries are kept.
Each entry is sealed with an HMAC whose key is this boot's name (``_platform.boot_id``), not with
a plain hash: a cache folder that travels (a CI cache restored from another job or branch, a home
folder copied from another machine) is never read, so it cannot hand ``sync --frozen`` a parse of
bytes nobody committed; after a reboot each file is parsed once again. Where the system names no
boot (macOS, Windows), nothing is kept. Whoever can write the cache folder during this boot can
already act as the user.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alex_models import __version__
from alex_models._fs import atomic_write
from alex_models._platform import boot_id, remove
from alex_models.settings import cache_home

T = TypeVar("T")

_FORMAT = 1
"""Bump when the parsed structure changes for the same bytes (``_yaml.plain_document``)."""
_KEPT = 64
"""Entries kept: a few projects' manifests and locks, each a few KB."""


def read(
    data: bytes,
    validate: Callable[[Any], T],
    parse: Callable[[str], tuple[T, Any]],
    stale: tuple[type[Exception], ...],
) -> T:
    """A file's bytes as ``validate`` makes them from what they parsed into before; else, or when
    that raises one of ``stale`` (a check this alex-models added), as ``parse`` makes them from
    their text, which also gives what to keep. ``parse`` raises the errors that name line and
    column; ``UnicodeDecodeError`` is the caller's, as from ``Path.read_text``."""
    cached = recall(data)
    if cached is not None:
        try:
            return validate(cached)
        except stale:
            pass
    made, plain = parse(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8").read())  # as read_text
    keep(data, plain)
    return made


def recall(data: bytes) -> Any | None:
    """The plain structure that exactly these bytes parsed into before, or None."""
    secret = _secret()
    if secret is None:
        return None
    key = hashlib.sha256(data).hexdigest()
    try:
        stored = _entry_path(key).read_bytes()
    except (OSError, ValueError, RuntimeError):  # absent, unreadable, no home folder to find
        return None
    digest, _, body = stored.partition(b"\n")
    if not hmac.compare_digest(digest, seal(body, secret).encode()):
        return None  # torn, edited, or from another boot or machine: the next parse writes it anew
    try:
        entry = json.loads(body)
    except ValueError:
        return None
    if not isinstance(entry, dict) or (entry.get("format"), entry.get("version"), entry.get("sha256")) != (
        _FORMAT,
        __version__,
        key,
    ):
        return None
    return entry.get("document")


def keep(data: bytes, document: Any) -> None:
    """Remember that ``data`` parsed into ``document``, if JSON holds it exactly."""
    secret = _secret()
    if secret is None:
        return
    key = hashlib.sha256(data).hexdigest()
    entry = {"format": _FORMAT, "version": __version__, "sha256": key, "document": document}
    try:
        body = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()
    except (TypeError, ValueError):  # a value JSON has no form for (a date, a mapping as a key)
        return
    if json.loads(body)["document"] != document:
        return  # JSON would give back something else (an integer key as a string): parse each time
    try:
        path = _entry_path(key)
        atomic_write(path, seal(body, secret).encode() + b"\n" + body, durable=False)
        _prune(path.parent, path.name)
    except (OSError, ValueError, RuntimeError):
        return  # a read-only or full cache folder: the file is parsed each time, as without a cache


def seal(body: bytes, secret: bytes) -> str:
    """The first line of an entry whose JSON is ``body``."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


@functools.cache
def _secret() -> bytes | None:
    boot = boot_id()
    return boot.encode() if boot else None


def _entry_path(key: str) -> Path:
    return cache_home() / "documents" / f"{key}.json"


def _prune(folder: Path, written: str) -> None:
    """Keep ``written`` and the newest others of ``folder``, ``_KEPT`` in all; remove the rest (a
    killed writer's temporary file too)."""
    with os.scandir(folder) as entries:
        others = [(e.stat().st_mtime_ns, e.name) for e in entries if e.is_file() and e.name != written]
    for _, name in sorted(others, reverse=True)[_KEPT - 1 :]:
        remove(folder / name)
