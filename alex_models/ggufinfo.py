"""What a GGUF file's header says, read with the ``gguf`` package (the header only, never tensors).

``sync`` checks every GGUF before it enters the store: the magic and header must parse, and a
shard of a split model must say it is that shard (``split.no`` is 0-based; the file name's number is
``split.no + 1``, as llama.cpp's ``llama_split_path`` writes it). The emitters read the trained
context length and whether the file carries a chat template, to catch mistakes early.

The files it reads in tests and in the demo are written by ``alex_models.tinymodels``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alex_models._ids import SPLIT_RE
from alex_models.errors import IntegrityError

GGUF_MAGIC = b"GGUF"


class NotGGUFError(IntegrityError):
    """A file that should be GGUF is not, or contradicts its own name."""


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


def read_gguf(path: Path, *, label: str | None = None) -> GGUFInfo:
    """Parse ``path``'s GGUF header; raise ``NotGGUFError`` naming ``label`` if it does not parse."""
    name = label or str(path)
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise NotGGUFError(f"{name} is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
    from gguf import GGUFReader  # noqa: PLC0415 - pulls in numpy; only sync and emit need it

    try:
        reader = GGUFReader(path, "r")
    except Exception as exc:  # the reader raises ValueError, IndexError, struct errors, …
        raise NotGGUFError(f"{name}: the GGUF header does not parse: {exc}") from None

    def field(key: str) -> object:
        found = reader.fields.get(key)
        return None if found is None else found.contents()

    architecture = field("general.architecture")
    arch = architecture if isinstance(architecture, str) else None
    context = field(f"{arch}.context_length") if arch else None
    version = field("GGUF.version")
    split_no, split_count = field("split.no"), field("split.count")
    return GGUFInfo(
        version=version if isinstance(version, int) else 0,
        architecture=arch,
        context_length=context if isinstance(context, int) else None,
        has_chat_template=isinstance(field("tokenizer.chat_template"), str),
        split_no=split_no if isinstance(split_no, int) else None,
        split_count=split_count if isinstance(split_count, int) else None,
        tensor_count=len(reader.tensors),
    )


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
