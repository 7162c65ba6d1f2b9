"""GGUF headers checked against the names the files will have."""

from __future__ import annotations

from pathlib import Path

import pytest

from alex_models.ggufinfo import NotGGUFError, check_gguf
from alex_models.tinymodels import write_tiny_gguf


def test_a_shard_named_as_another_shard_is_refused(tmp_path: Path) -> None:
    shard = write_tiny_gguf(tmp_path / "m.gguf", split=(1, 2))
    with pytest.raises(NotGGUFError, match="named shard 2 of 2, but its header says shard 1 of 2"):
        check_gguf(shard, "model-00002-of-00002.gguf")


def test_only_llama_cpp_shard_names_are_shards(tmp_path: Path) -> None:
    """llama.cpp looks for '-0000N-of-0000M.gguf' exactly; an upper-case suffix is no shard to it,
    so its number is not held against the header (one pattern, in _ids, for resolver and check)."""
    shard = write_tiny_gguf(tmp_path / "m.gguf", split=(1, 2))
    assert check_gguf(shard, "model-00002-of-00002.GGUF").split_no == 0
