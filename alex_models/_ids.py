"""The shapes of the identifiers every layer checks: repo ids, git commit ids, SHA256 hex digests,
shard names."""

import re

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
"""A full git commit id, as the Hub writes it: 40 lowercase hex digits."""
SHA256_RE = re.compile(r"[0-9a-f]{64}")
"""A SHA256 digest: 64 lowercase hex digits."""
SPLIT_RE = re.compile(r"(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf")
"""A shard of a split GGUF model: exactly the names llama.cpp's ``llama_split_path`` writes and
looks for (case matters: llama.cpp does not see ``-00001-of-00002.GGUF`` as a shard)."""
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
REPO_ID_RE = re.compile(rf"{_REPO_PART}/{_REPO_PART}")
"""``org/name`` as the Hub allows it: letters, digits, ``.``, ``_``, ``-``, at most 96 each, neither
starting nor ending with punctuation; ``is_repo_id`` also refuses ``--`` and ``..``."""


def is_repo_id(value: str) -> bool:
    """Whether ``value`` is a repo id the Hub would accept (and safe as two path segments)."""
    return REPO_ID_RE.fullmatch(value) is not None and "--" not in value and ".." not in value
