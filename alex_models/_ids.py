"""The shapes of the identifiers every layer checks: git commit ids and SHA256 hex digests."""

import re

COMMIT_RE = re.compile(r"[0-9a-f]{40}")
"""A full git commit id, as the Hub writes it: 40 lowercase hex digits."""
SHA256_RE = re.compile(r"[0-9a-f]{64}")
"""A SHA256 digest: 64 lowercase hex digits."""
