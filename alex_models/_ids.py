"""The shapes of the identifiers every layer checks: repo ids, git commit ids, SHA256 hex digests,
shard names, registry references."""

import re
from dataclasses import dataclass

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


_OCI_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
OCI_REF_RE = re.compile(
    r"(?P<registry>(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?)"
    rf"/(?P<repository>{_OCI_COMPONENT}(?:/{_OCI_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@sha256:(?P<digest>[0-9a-f]{64}))"
)
"""``REGISTRY/REPOSITORY:TAG`` or ``REGISTRY/REPOSITORY@sha256:<hex>``, by the distribution spec's
grammar (a lowercase repository, a tag of at most 128 characters); ``oci_reference`` adds docker's
rule that the first part names a registry only when it holds a ``.`` or ``:`` or is ``localhost``."""


@dataclass(frozen=True)
class OciReference:
    """A manifest in a registry, by tag (which can move) or by digest (which cannot)."""

    registry: str
    """``host[:port]``, lowercase."""
    repository: str
    tag: str | None
    digest: str | None
    """``sha256:<hex>`` when the reference pins one."""

    @property
    def name(self) -> str:
        """``REGISTRY/REPOSITORY``."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}" if self.tag is not None else f"{self.name}@{self.digest}"


def oci_reference(value: str) -> OciReference | None:
    """``value`` as a registry reference, or None when it is none."""
    found = OCI_REF_RE.fullmatch(value)
    if found is None:
        return None
    registry = found["registry"].lower()
    if "." not in registry and ":" not in registry and registry != "localhost":
        return None  # "ai/smollm2:latest": docker would read Docker Hub; we want the registry said
    digest = f"sha256:{found['digest']}" if found["digest"] else None
    return OciReference(registry, found["repository"], found["tag"], digest)
