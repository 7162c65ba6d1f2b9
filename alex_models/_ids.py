"""The shapes of the identifiers every layer checks: git commit ids, SHA256 hex digests, shard names."""

import re

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
"""A full git commit id, as the Hub writes it: 40 lowercase hex digits."""
SHA256_RE = re.compile(r"[0-9a-f]{64}")
"""A SHA256 digest: 64 lowercase hex digits."""
SPLIT_RE = re.compile(r"(?P<stem>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf")
"""A shard of a split GGUF model: exactly the names llama.cpp's ``llama_split_path`` writes and
looks for (case matters: llama.cpp does not see ``-00001-of-00002.GGUF`` as a shard)."""
