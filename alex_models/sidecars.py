"""Which sidecar GGUF goes with a model, chosen as ``llama-server -hf`` chooses it. Pure: paths only.

A port of llama.cpp's ``find_best_sibling`` (common/download.cpp, llama.cpp as vendored by
llama-cpp-python 0.3.36): among the repo's ``.gguf`` paths that contain the sidecar's keyword, a
candidate counts only if its folder is the model's folder or one above it; a deeper folder wins,
then (draft heads only) a name carrying the requested quant tag (``-Q8_0.``), then the quantization
bit depth closest to the tag's, or to the model's. llama.cpp takes the first of a tie in the Hub's
listing order; ``best`` returns every tied candidate, and the resolver refuses a tie instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

DraftHead = Literal["mtp", "eagle3", "dflash", "dspark"]
"""The draft sidecars llama.cpp selects for ``--spec-type draft-<kind>``."""
DRAFT_HEADS: tuple[DraftHead, ...] = ("mtp", "eagle3", "dflash", "dspark")
MMPROJ_KEYWORD = "mmproj"
# llama.cpp's gguf_filename_is_model: a .gguf whose file name has one of these is never the model.
NOT_A_MODEL = (MMPROJ_KEYWORD, "imatrix", *(f"{kind}-" for kind in DRAFT_HEADS))

_SPLIT_SUFFIX = re.compile(r"^(.+)-([0-9]{5})-of-([0-9]{5})$", re.IGNORECASE)
_TAG = re.compile(r"[-.]([A-Z0-9_]+)$", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")


def keyword(kind: DraftHead | Literal["mmproj"]) -> str:
    """The text llama.cpp looks for in a sidecar's path: ``mmproj``, or ``mtp-``, ``eagle3-``, …"""
    return MMPROJ_KEYWORD if kind == "mmproj" else f"{kind}-"


def quant_bits(path: str) -> int:
    """``x-Q4_K_M.gguf`` -> 4, ``mmproj-F16.gguf`` -> 16; 0 when the name carries no bit depth."""
    if not path.endswith(".gguf"):
        return 0
    prefix = path[: -len(".gguf")]
    split = _SPLIT_SUFFIX.match(prefix)
    if split is not None:
        prefix = split[1]
    tag = _TAG.search(prefix)
    return _bits(tag[1]) if tag else 0


def _bits(tag: str) -> int:
    digits = _DIGITS.search(tag)
    return int(digits[0]) if digits else 0


def best(paths: Iterable[str], model: str, word: str, tag: str | None = None) -> list[str]:
    """The best candidates for ``model``'s sidecar whose path has ``word``: one, several when tied, none."""
    tag_upper = (tag or "").upper()
    model_bits = _bits(tag_upper) if tag_upper else quant_bits(model)
    model_dirs = model.split("/")[:-1]
    ranked: list[tuple[tuple[int, bool, int], str]] = []
    for path in paths:
        if not path.endswith(".gguf") or word not in path:
            continue
        dirs = path.split("/")[:-1]
        if dirs != model_dirs[: len(dirs)]:
            continue  # a folder beside or below the model's: not the model's sidecar
        exact = bool(tag_upper) and f"-{tag_upper}." in path.upper()
        # Deeper first, then an exact tag, then the closest bit depth (lower is better, hence -).
        ranked.append(((len(dirs), exact, -abs(quant_bits(path) - model_bits)), path))
    if not ranked:
        return []
    top = max(score for score, _ in ranked)
    return sorted(path for score, path in ranked if score == top)


DEFAULT_TAGS = ("Q4_K_M", "Q8_0")
"""What ``-hf org/repo`` without ``:QUANT`` looks for, in order."""


def best_model(paths: Iterable[str], tag: str | None) -> list[str]:
    """llama.cpp's ``find_best_model``: the models (first shards) whose path has the tag before a
    ``.`` or ``-``; without a tag, Q4_K_M's, else Q8_0's, else any. llama.cpp takes the first in
    the Hub's listing order; this returns them all, sorted, for the caller to refuse a tie."""
    models = sorted(
        path
        for path in paths
        if path.endswith(".gguf") and is_model_name(path) and _is_first_part(path[: -len(".gguf")])
    )
    for wanted in [tag] if tag else DEFAULT_TAGS:
        pattern = re.compile(rf"{re.escape(wanted)}[.-]", re.IGNORECASE)
        found = [path for path in models if pattern.search(path)]
        if found:
            return found
    return [] if tag else models


def _is_first_part(prefix: str) -> bool:
    split = _SPLIT_SUFFIX.match(prefix)
    return split is None or int(split[2]) == 1


def is_model_name(path: str) -> bool:
    """Whether llama.cpp would take this .gguf as a model (not a projector, imatrix or draft head)."""
    name = path.rsplit("/", 1)[-1]
    return not any(word in name for word in NOT_A_MODEL)
