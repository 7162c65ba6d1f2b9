"""The value types of ``models.yaml`` (and ``models.lock``) fields, each checked as it is read:
repo ids, revisions, paths inside a repo, model names, quant labels, SHA256s, URLs, remote URLs
that must hold no secret, and the strict model they sit in."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from alex_models._fs import relpath_problem
from alex_models._ids import COMMIT_RE, SHA256_RE, is_repo_id, oci_reference

_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_QUANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Git ref names (git-check-ref-format): no control characters, spaces, ~^:?*[\ or "..", "@{",
# no segment starting with "." or ending with ".lock", no leading/trailing "/" or "//".
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")
_LOOPBACK_HOSTS = ("localhost", "127.", "[::1]")
_REMOTE_URL_RE = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<authority>[^/?#]*)(?P<rest>[^?#]*)(?:\?(?P<query>[^#]*))?"
)
_SECRET_PARAM_RE = re.compile(r"(?i)(token|secret|key|sig|signature|password|passwd|credential|auth)")


def check_version(value: object) -> object:
    """A format version is a plain integer: YAML's ``true`` and ``1.0`` are not version 1."""
    if type(value) is not int:
        raise ValueError(f"must be the whole number 1, got {value!r}")
    return value


def _check_repo_id(value: str) -> str:
    if not is_repo_id(value):
        raise ValueError(f"{value!r} is not a Hugging Face repo id; write it as 'org/name'")
    return value


def _check_revision(value: str) -> str:
    if COMMIT_RE.fullmatch(value):
        return value
    segments = value.split("/")
    if (
        not value
        or _BAD_REF_CHARS.search(value)
        or value.startswith("-")
        or any(not s or s.startswith(".") or s.endswith(".lock") for s in segments)
        or value.endswith(".")
        or value == "@"
    ):
        raise ValueError(f"{value!r} is neither a branch or tag name nor a 40-hex commit id")
    return value


def _check_oci(value: str) -> str:
    if oci_reference(value) is None:
        raise ValueError(
            f"{value!r} is not a registry reference like ghcr.io/team/models:qwen or "
            "docker.io/ai/smollm2@sha256:<64 hex> (the registry, a lowercase repository, a tag or a digest)"
        )
    return value


def _check_relpath(value: str) -> str:
    problem = relpath_problem(value)
    if problem is not None:
        raise ValueError(f"{value!r} is not a relative path inside the repo: {problem}")
    return value


def _check_model_name(value: str) -> str:
    if not _MODEL_NAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a model name: use letters, digits, '.', '_' and '-'")
    return value


def _check_quant(value: str) -> str:
    if not _QUANT_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a quant label like Q4_K_M")
    return value.upper()  # labels match case-insensitively, so the case is not part of the meaning


def _check_sha256(value: str) -> str:
    lowered = value.lower()
    if not SHA256_RE.fullmatch(lowered):
        raise ValueError(f"{value!r} is not a SHA256 (64 hex digits)")
    return lowered


def _check_url(value: str) -> str:
    if value.startswith("https://") and len(value) > len("https://"):
        return value
    if value.startswith("http://") and value[len("http://") :].startswith(_LOOPBACK_HOSTS):
        return value  # plain HTTP only on this machine (tests, local mirrors)
    raise ValueError(f"{value!r} is not an https:// URL")


def holds_credentials(url: str) -> bool:
    """Whether a remote's URL carries a secret: ``user:password@`` before its host (a secret key
    may hold a ``/``), or a query parameter named like one (a token, a signature, a key). The
    manifest refuses such a URL, and so does the command line (``remotes.refuse_credentials``)."""
    head, _, query = url.split("://", 1)[-1].partition("?")
    params = query.split("#", 1)[0].split("&")
    return userinfo_end(head) >= 0 or any(_SECRET_PARAM_RE.search(p.split("=", 1)[0]) for p in params if p)


def userinfo_end(head: str) -> int:
    """Where the ``user:password@`` at the start of ``head`` (a URL after its ``scheme://``, before
    its query) ends: the index of its ``@``, or -1 when there is none."""
    at = head.find("@")
    before = head[:at]
    return at if at >= 0 and ("/" not in before or ":" in before) else -1


def _check_remote_url(value: str) -> str:
    """A remote's URL, which never carries a secret: models.yaml is committed and shared."""
    found = _REMOTE_URL_RE.fullmatch(value)
    if found is None:
        raise ValueError(f"{value!r} is not a remote URL like s3://bucket/prefix or file:///srv/models")
    if holds_credentials(value):
        raise ValueError(
            "a remote URL in models.yaml must not hold credentials (user:password@ or a token in the "
            "query); give them through the storage's own variables and files (AWS_*, ...)"
        )
    return value


RepoId = Annotated[str, AfterValidator(_check_repo_id)]
Revision = Annotated[str, AfterValidator(_check_revision)]
RelPath = Annotated[str, AfterValidator(_check_relpath)]
ModelName = Annotated[str, AfterValidator(_check_model_name)]
Quant = Annotated[str, AfterValidator(_check_quant)]
Sha256 = Annotated[str, AfterValidator(_check_sha256)]
Url = Annotated[str, AfterValidator(_check_url)]
OciRef = Annotated[str, AfterValidator(_check_oci)]
RemoteUrl = Annotated[str, AfterValidator(_check_remote_url)]


class StrictModel(BaseModel):
    """Unknown keys are errors; values are not coerced between types; instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
