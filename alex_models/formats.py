"""The emit formats: one list, read by the manifest (``emit:`` entries), the renderers (one each)
and the CLI's help. A module of its own, light enough for ``--help`` to import."""

from __future__ import annotations

from enum import StrEnum


class EmitFormat(StrEnum):
    """What ``emit`` writes, and for whom."""

    LLAMA_SERVER = "llama-server"
    """llama-server's command line (``--json``: its argv)."""
    LLAMA_SERVER_ENV = "llama-server-env"
    """``LLAMA_ARG_*`` variables, for systemd and containers."""
    ROUTER_PRESET = "router-preset"
    """``llama-server --models-preset FILE``: router mode, several models."""
    LLAMA_SWAP = "llama-swap"
    """llama-swap's ``config.yaml``."""
    LLAMA_CPP_PYTHON = "llama-cpp-python"
    """``python -m llama_cpp.server --config_file FILE``."""
    ALEX = "alex"
    """The app's provider config, merged into an existing file."""


class Shell(StrEnum):
    """The shell an emitted command line is written for (``emit --shell``)."""

    SH = "sh"
    """POSIX shells: sh, bash, zsh (shlex quoting)."""
    POWERSHELL = "powershell"
    """PowerShell 7.3+ (``pwsh``) and Windows PowerShell: the call operator, single quotes."""
    CMD = "cmd"
    """Windows' cmd.exe and .cmd/.bat files: the Microsoft C runtime's quoting."""
