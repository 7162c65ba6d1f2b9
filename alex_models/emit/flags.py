"""llama-server's option names and ``LLAMA_ARG_*`` variables, as the installed build spells them.

Names drift between builds (the draft model option became ``--spec-draft-model``, keeping
``-md/--model-draft`` as an alias), so when a ``llama-server`` is on ``PATH`` its ``--help`` is
read once and followed (``provider.detect_flags`` runs it); without one, the long-standing names
are used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Long-standing names: every llama-server build of the last two years accepts these.
KNOWN_ENV: Mapping[str, str] = {
    "--model": "LLAMA_ARG_MODEL",
    "--alias": "LLAMA_ARG_ALIAS",
    "--host": "LLAMA_ARG_HOST",
    "--port": "LLAMA_ARG_PORT",
    "--ctx-size": "LLAMA_ARG_CTX_SIZE",
    "--n-gpu-layers": "LLAMA_ARG_N_GPU_LAYERS",
    "--mmproj": "LLAMA_ARG_MMPROJ",
    "--model-draft": "LLAMA_ARG_MODEL_DRAFT",
    "--chat-template": "LLAMA_ARG_CHAT_TEMPLATE",
    "--chat-template-file": "LLAMA_ARG_CHAT_TEMPLATE_FILE",
}
_OPTION_RE = re.compile(r"(?<![\w-])(--?[a-z0-9][a-z0-9-]*)")
_ENV_RE = re.compile(r"\(env: (LLAMA_ARG_[A-Z0-9_]+)\)")
_COLUMN_END_RE = re.compile(r"(?<![,\s])\s{2,}")
_DESCRIPTION_INDENT = 8


@dataclass(frozen=True)
class ServerFlags:
    """How to spell the options alex-models emits."""

    draft: str = "--model-draft"
    env: Mapping[str, str] = field(default_factory=lambda: dict(KNOWN_ENV))
    """Long option -> its ``LLAMA_ARG_*`` variable."""
    source: str = "built-in names"

    def env_for(self, option: str) -> str | None:
        return self.env.get(option)


def parse_help(text: str, source: str = "llama-server --help") -> ServerFlags:
    """The names a ``llama-server --help`` text shows."""
    env: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.lstrip()
        # Options start a line; wrapped descriptions are indented (by 40 columns in llama.cpp).
        if stripped.startswith("-") and len(line) - len(stripped) < _DESCRIPTION_INDENT:
            # The option column ends where a run of spaces starts the description; the padding
            # after a short option ("-m,    --model FNAME") follows a comma and does not end it.
            column = _COLUMN_END_RE.split(stripped, maxsplit=1)[0]
            current = [name for name in _OPTION_RE.findall(column) if name.startswith("--")]
        found = _ENV_RE.search(line)
        if found:
            for name in current:
                env[name] = found[1]
    draft = "--spec-draft-model" if "--spec-draft-model" in text else "--model-draft"
    merged = {**KNOWN_ENV, **env}
    if draft == "--spec-draft-model" and draft in env:
        merged["--model-draft"] = env[draft]
    return ServerFlags(draft=draft, env=merged, source=source)
