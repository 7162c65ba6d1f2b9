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


# Without a llama-server --help to read: the short names of the options a preset must not set, and
# of those alex-models emits (llama.cpp's own spellings).
_BUILT_IN_NAMES = {
    **dict.fromkeys(("m", "model"), "--model"),
    **dict.fromkeys(("hf", "hfr", "hf-repo"), "--hf-repo"),
    **dict.fromkeys(("hfd", "hfrd", "hf-repo-draft", "spec-draft-hf"), "--hf-repo-draft"),
    **dict.fromkeys(("md", "model-draft", "spec-draft-model"), "--model-draft"),
    "hff": "--hf-file",
    "mu": "--model-url",
    "dr": "--docker-repo",
    "mm": "--mmproj",
    "mmu": "--mmproj-url",
    "c": "--ctx-size",
    "ngl": "--n-gpu-layers",
}


@dataclass(frozen=True)
class ServerFlags:
    """How to spell the options alex-models emits."""

    draft: str = "--model-draft"
    env: Mapping[str, str] = field(default_factory=lambda: dict(KNOWN_ENV))
    """Long option -> its ``LLAMA_ARG_*`` variable."""
    source: str = "built-in names"
    names: Mapping[str, str] = field(default_factory=lambda: dict(_BUILT_IN_NAMES))
    """Every spelling of an option without its dashes (``c``, ``ctx-size``) -> its long option."""
    switches: frozenset[str] = frozenset()
    """Long options that take no value (``--jinja``)."""
    negations: Mapping[str, str] = field(default_factory=dict)
    """``no-mmap`` -> ``--mmap``: the spellings that turn a switch off."""

    def env_for(self, option: str) -> str | None:
        return self.env.get(option)

    def canonical(self, key: str) -> tuple[str, bool]:
        """A preset key (``c``, ``ctx-size``, ``LLAMA_ARG_CTX_SIZE``, ``no-mmap``) as (long option,
        whether it is a negation); an unknown key is read as a long option of that name."""
        if key in self.negations:
            return self.negations[key], True
        if key in self.names:
            return self.names[key], False
        by_env = {env: option for option, env in self.env.items()}
        return by_env.get(key, f"--{key}"), False


def parse_help(text: str, source: str = "llama-server --help") -> ServerFlags:
    """The names a ``llama-server --help`` text shows."""
    env: dict[str, str] = {}
    names: dict[str, str] = dict(_BUILT_IN_NAMES)
    switches: set[str] = set()
    negations: dict[str, str] = {}
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.lstrip()
        # Options start a line; wrapped descriptions are indented (by 40 columns in llama.cpp).
        if stripped.startswith("-") and len(line) - len(stripped) < _DESCRIPTION_INDENT:
            # The option column ends where a run of spaces starts the description; the padding
            # after a short option ("-m,    --model FNAME") follows a comma and does not end it.
            column = _COLUMN_END_RE.split(stripped, maxsplit=1)[0]
            spelled = _OPTION_RE.findall(column)
            current = [name for name in spelled if name.startswith("--")]
            positive = [name for name in current if not name.startswith("--no-")]
            if positive:
                # llama.cpp's main spelling of an option is its last (common_preset::to_args).
                main = positive[-1]
                for name in spelled:
                    target = negations if name.startswith("--no-") else names
                    target[name.lstrip("-")] = main
                if not _OPTION_RE.sub("", column).strip(" ,"):
                    switches.add(main)  # no value hint after the names
        found = _ENV_RE.search(line)
        if found:
            for name in current:
                env[name] = found[1]
    draft = "--spec-draft-model" if "--spec-draft-model" in text else "--model-draft"
    merged = {**KNOWN_ENV, **env}
    if draft == "--spec-draft-model" and draft in env:
        merged["--model-draft"] = env[draft]
    return ServerFlags(
        draft=draft,
        env=merged,
        source=source,
        names=names,
        switches=frozenset(switches),
        negations=negations,
    )
