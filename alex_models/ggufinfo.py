"""What a GGUF file's header says: the magic, the metadata and the tensor table, never the tensors.

``sync`` checks every GGUF before it enters the store: the magic and header must parse, and a
shard of a split model must say it is that shard (``split.no`` is 0-based; the file name's number is
``split.no + 1``, as llama.cpp's ``llama_split_path`` writes it). The emitters read the trained
context length and whether the file carries a chat template, to catch mistakes early.

The header is read here with ``struct`` over a memory map, not with the ``gguf`` package: its
reader loads numpy (about 0.15 s, at the end of every sync that fetched a GGUF and in every emit)
and builds an array per value, vocabulary strings included (a header of 300,000 strings: 6.8 s
there, 0.03 s here). The layout (GGUF v2 and v3, either
byte order) is the one llama.cpp's ``gguf.cpp`` reads; a header that does not parse, or that
breaks the limits llama.cpp sets (names, dimensions, alignment, offsets), is refused.
``tests/test_ggufinfo.py`` checks the facts against the ``gguf`` package's
reader on files its writer made.

The files it reads in tests and in the demo are written by ``alex_models.tinymodels``.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from alex_models._ids import SPLIT_RE
from alex_models.errors import IntegrityError

GGUF_MAGIC = b"GGUF"
_VERSIONS = (2, 3)
"""Version 1 (counts of 32 bits) has not been written since 2023; llama.cpp refuses it."""
_MAX_DIMS = 4
"""``GGML_MAX_DIMS``: llama.cpp refuses a tensor with more."""
_DEFAULT_ALIGNMENT = 32
_MAX_KEY = 65535
"""The longest key the GGUF format allows."""
_MAX_NAME = 63
"""The longest tensor name llama.cpp reads (``GGML_MAX_NAME``, 64 with its NUL)."""
_USED = frozenset(
    {"general.architecture", "general.alignment", "tokenizer.chat_template", "split.no", "split.count"}
)
"""The keys whose values are kept (besides ``*.context_length``)."""
_MAX_NESTING = 16
"""Arrays of arrays this deep at most: real files nest one level; a deeper file would exhaust
Python's recursion limit instead of being refused."""

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
"""GGUF value types of a fixed size, by their number, as ``struct`` formats."""
_STRING, _ARRAY, _UINT32 = 8, 9, 4


class NotGGUFError(IntegrityError):
    """A file that should be GGUF is not, or contradicts its own name."""


class _Malformed(Exception):
    """The header does not parse; the message says where."""


@dataclass(frozen=True)
class GGUFInfo:
    """The header facts alex-models uses."""

    version: int
    architecture: str | None
    context_length: int | None
    has_chat_template: bool
    split_no: int | None
    split_count: int | None
    tensor_count: int


class _Array:
    """A metadata array: skipped, as no fact alex-models uses is one."""


class _Header:
    """A cursor over the header's bytes, in the file's byte order."""

    def __init__(self, data: mmap.mmap, order: str) -> None:
        self.data = data
        self.order = order
        self.pos = 0
        self._structs: dict[str, struct.Struct] = {}

    def _layout(self, fmt: str) -> struct.Struct:
        found = self._structs.get(fmt)
        if found is None:
            found = self._structs[fmt] = struct.Struct(self.order + fmt)
        return found

    def take(self, fmt: str) -> int | float | bool:
        """One value of ``fmt``."""
        layout = self._layout(fmt)
        if self.pos + layout.size > len(self.data):
            raise _Malformed(f"it ends inside its header (at byte {self.pos})")
        (value,) = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return value  # type: ignore[no-any-return]

    def skip(self, fmt: str, count: int) -> None:
        """``count`` values of ``fmt``, not read."""
        end = self.pos + self._layout(fmt).size * count
        if end > len(self.data):
            raise _Malformed(f"it ends inside its header (at byte {self.pos})")
        self.pos = end

    def count(self) -> int:
        return int(self.take("Q"))

    def string(self, *, limit: int | None = None, strict: bool = False) -> str:
        """A string; ``limit``: longer is refused; ``strict``: it must be UTF-8 (a name). A value
        that is not is read with replacement characters, as llama.cpp reads only what it uses."""
        length = self.count()
        if limit is not None and length > limit:
            raise _Malformed(
                f"a name at byte {self.pos} is {length} bytes long; llama.cpp reads up to {limit}"
            )
        end = self.pos + length
        if end > len(self.data):
            raise _Malformed(f"a string at byte {self.pos} runs past the end of the file")
        try:
            text = self.data[self.pos : end].decode("utf-8", "strict" if strict else "replace")
        except UnicodeDecodeError:
            raise _Malformed(f"the name at byte {self.pos} is not UTF-8") from None
        self.pos = end
        return text

    def new_name(self, seen: set[str], *, limit: int, what: str) -> str:
        """A key's or a tensor's name, which must be UTF-8, at most ``limit`` bytes, and not in
        ``seen`` (it is added)."""
        name = self.string(limit=limit, strict=True)
        if name in seen:
            raise _Malformed(f"the {what} {name!r} appears twice")
        seen.add(name)
        return name

    def skip_string(self) -> None:
        length = self.count()
        if self.pos + length > len(self.data):
            raise _Malformed(f"a string at byte {self.pos} runs past the end of the file")
        self.pos += length

    def skip_strings(self, count: int) -> None:
        """``count`` strings, as one tight loop: a vocabulary holds hundreds of thousands."""
        data, pos, length_at = self.data, self.pos, self._layout("Q").unpack_from
        end = len(data)
        try:
            for _ in range(count):
                pos += 8 + length_at(data, pos)[0]
                if pos > end:
                    break
        except (struct.error, OverflowError):  # past the end, or beyond what an offset can be
            pos = end + 1
        if pos > len(data):
            raise _Malformed(f"a list of strings from byte {self.pos} runs past the end of the file")
        self.pos = pos

    def value(self, kind: int, *, used: bool) -> object:
        """A value of type ``kind``; one not ``used`` is only skipped (a string is not copied)."""
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            if not used:
                self.skip_string()
                return None
            return self.string()
        if kind == _ARRAY:
            self.skip_array()
            return _Array()
        raise _Malformed(f"unknown value type {kind} at byte {self.pos - 4}")

    def skip_array(self, depth: int = 1) -> None:
        if depth > _MAX_NESTING:
            raise _Malformed(f"arrays nested over {_MAX_NESTING} deep at byte {self.pos}")
        kind, length = int(self.take("I")), self.count()
        if kind in _SCALARS:
            self.skip(_SCALARS[kind], length)
        elif kind == _STRING:  # a vocabulary: each string's length says where the next one starts
            self.skip_strings(length)
        elif kind == _ARRAY:
            for _ in range(length):
                self.skip_array(depth + 1)
        else:
            raise _Malformed(f"unknown array item type {kind} at byte {self.pos - 12}")


def read_gguf(path: Path, *, label: str | None = None) -> GGUFInfo:
    """Parse ``path``'s GGUF header; raise ``NotGGUFError`` naming ``label`` if it does not parse."""
    name = label or str(path)
    with path.open("rb") as f:
        magic = f.read(4)
        if magic != GGUF_MAGIC:
            raise NotGGUFError(f"{name} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                return _parse(data)
            except _Malformed as exc:
                raise NotGGUFError(f"{name}: the GGUF header does not parse: {exc}") from None


def _parse(data: mmap.mmap) -> GGUFInfo:
    # A file written on a machine of the other byte order has its version's low half zero.
    if len(data) < 8:
        raise _Malformed("it ends inside its header (at byte 4)")
    order = "<" if struct.unpack_from("<I", data, 4)[0] & 0xFFFF else ">"
    header = _Header(data, order)
    header.pos = 4
    version = int(header.take("I"))
    if version not in _VERSIONS:
        raise _Malformed(f"version {version} is not one llama.cpp reads ({', '.join(map(str, _VERSIONS))})")
    tensor_count, kv_count = header.count(), header.count()
    fields: dict[str, object] = {}
    """The values of the keys alex-models uses; the others are checked and skipped."""
    keys: set[str] = set()
    for _ in range(kv_count):
        key = header.new_name(keys, limit=_MAX_KEY, what="key")
        kind = int(header.take("I"))
        if key == "general.alignment" and kind != _UINT32:
            raise _Malformed("general.alignment is not a 32-bit unsigned integer")
        used = key in _USED or key.endswith(".context_length")
        value = header.value(kind, used=used)
        if used:
            fields[key] = value
    names: set[str] = set()
    offsets: list[int] = []
    for _ in range(tensor_count):
        tensor = header.new_name(names, limit=_MAX_NAME, what="tensor")
        dims = int(header.take("I"))
        if dims > _MAX_DIMS:
            raise _Malformed(
                f"the tensor {tensor!r} has {dims} dimensions; llama.cpp reads at most {_MAX_DIMS}"
            )
        header.skip("Q", dims)
        header.skip("I", 1)  # its ggml type: new ones appear with new llama.cpp releases
        offsets.append(int(header.take("Q")))
    _check_layout(header, fields, offsets)

    def integer(key: str) -> int | None:
        found = fields.get(key)
        return found if isinstance(found, int) and not isinstance(found, bool) else None

    architecture = fields.get("general.architecture")
    arch = architecture if isinstance(architecture, str) else None
    return GGUFInfo(
        version=version,
        architecture=arch,
        context_length=integer(f"{arch}.context_length") if arch else None,
        has_chat_template=isinstance(fields.get("tokenizer.chat_template"), str),
        split_no=integer("split.no"),
        split_count=integer("split.count"),
        tensor_count=tensor_count,
    )


def _check_layout(header: _Header, fields: dict[str, object], offsets: list[int]) -> None:
    """The tensor data starts at the next multiple of the alignment, inside the file, and every
    tensor's offset is a multiple of it, as llama.cpp requires."""
    alignment = fields.get("general.alignment", _DEFAULT_ALIGNMENT)
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise _Malformed(f"general.alignment {alignment!r} is not a power of two")
    start = -(-header.pos // alignment) * alignment
    size = len(header.data)
    for offset in offsets:
        if offset % alignment or start + offset > size:
            raise _Malformed(f"a tensor's data offset {offset} is misaligned or past the end of the file")


def check_gguf(path: Path, repo_path: str, *, label: str | None = None) -> GGUFInfo:
    """The header of ``path`` (which will be ``repo_path`` in a view), checked against its name."""
    info = read_gguf(path, label=label)
    named = SPLIT_RE.fullmatch(repo_path)
    if named is not None:
        number, count = int(named["no"]), int(named["count"])
        if info.split_count is not None and (info.split_no, info.split_count) != (number - 1, count):
            raise NotGGUFError(
                f"{label or repo_path}: named shard {number} of {count}, but its header says shard "
                f"{(info.split_no or 0) + 1} of {info.split_count} (split.no={info.split_no})",
                hint="the repo's shards are mislabelled; llama.cpp would refuse them",
            )
    return info
