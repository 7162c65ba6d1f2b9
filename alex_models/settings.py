"""Where things are and how to reach the Hub, read from the environment when asked (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = ("1", "on", "yes", "true")


@dataclass(frozen=True)
class Settings:
    """Endpoint, offline mode and store location, as ``huggingface_hub`` and users expect them."""

    endpoint: str
    offline: bool
    home: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        endpoint = (env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        flags = (env.get("HF_HUB_OFFLINE", ""), env.get("TRANSFORMERS_OFFLINE", ""))
        offline = any(flag.strip().lower() in _TRUE for flag in flags)
        home = Path(env.get("ALEX_MODELS_HOME") or Path(env.get("HOME") or Path.home()) / ".alex" / "models")
        return cls(endpoint=endpoint, offline=offline, home=home.expanduser())
