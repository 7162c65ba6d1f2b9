"""Where things are and how to reach the Hub, read from the environment when asked (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
        return cls(endpoint=endpoint, offline=offline, home=store_home(environ=env).path)


StoreOrigin = Literal["ALEX_MODELS_HOME", "store:", "default", "given"]
"""Which setting chose the store: the variable, the manifest's key, the default, or the caller."""


@dataclass(frozen=True)
class StoreHome:
    """Where the store is, and which setting said so."""

    path: Path
    origin: StoreOrigin
    overridden: Path | None = None
    """The manifest's ``store:`` that ``ALEX_MODELS_HOME`` set aside, to show the user."""


def store_home(manifest_store: Path | None = None, environ: Mapping[str, str] | None = None) -> StoreHome:
    """The store to use: ``ALEX_MODELS_HOME``, else the manifest's ``store:``, else ``~/.alex/models``.

    The environment beats the config file, as in cargo and uv: one deploy host can point a shared
    project at its own volume without editing the committed manifest.
    """
    env = os.environ if environ is None else environ
    variable = env.get("ALEX_MODELS_HOME")
    if variable:
        path = Path(variable).expanduser()
        aside = None if manifest_store == path else manifest_store
        return StoreHome(path, "ALEX_MODELS_HOME", overridden=aside)
    if manifest_store is not None:
        return StoreHome(manifest_store, "store:")
    default = Path(env.get("HOME") or Path.home()) / ".alex" / "models"
    return StoreHome(default.expanduser(), "default")


def cache_home(environ: Mapping[str, str] | None = None) -> Path:
    """Where alex-models keeps what it can make again (``_doccache``): ``$XDG_CACHE_HOME/alex-models``,
    else ``%LOCALAPPDATA%\\alex-models\\cache`` (Windows), else ``~/.cache/alex-models``, as uv does."""
    env = os.environ if environ is None else environ
    if env.get("XDG_CACHE_HOME") and Path(env["XDG_CACHE_HOME"]).expanduser().is_absolute():
        return (
            Path(env["XDG_CACHE_HOME"]).expanduser() / "alex-models"
        )  # a relative one is ignored, as XDG says
    if env.get("LOCALAPPDATA"):
        return Path(env["LOCALAPPDATA"]) / "alex-models" / "cache"
    return Path(env.get("HOME") or Path.home()).expanduser() / ".cache" / "alex-models"
