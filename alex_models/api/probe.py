"""Use case ``probe``: is a llama.cpp server up, and is it serving the locked file?"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from alex_models.api.sync import require_lock, store_for
from alex_models.emit import server_specs
from alex_models.errors import RemoteError
from alex_models.manifest import load_manifest
from alex_models.provider import DEFAULT_BASE_URL, LlamaCppClient


@dataclass(frozen=True)
class ProbeResult:
    base_url: str
    up: bool
    status: str
    served: tuple[str, ...]
    """Model ids the server answers to."""
    name: str | None
    """The locked model probed for, if any."""
    model_path: str | None
    """The file the server says it loaded (llama-server's /props)."""
    expected: Path | None
    """The locked view path of ``name``."""
    matches: bool | None
    """True or False when the served file could be compared with the lock; None when it could not."""

    @property
    def ok(self) -> bool:
        served = self.name is None or self.name in self.served or self.matches is True
        return self.up and served and self.matches is not False


def probe(
    base_url: str | None = None,
    name: str | None = None,
    manifest_path: Path = Path("models.yaml"),
    store_home: Path | None = None,
) -> ProbeResult:
    """Ask the server at ``base_url`` (default: where the manifest says ``name`` is served)."""
    expected = None
    if manifest_path.exists():
        manifest = load_manifest(manifest_path)
        _, lock = require_lock(manifest_path, None)
        store = store_for(manifest_path, store_home)
        names = [name] if name else None
        specs = server_specs(manifest, lock, store.view_path, manifest_path.parent.absolute(), names)
        if specs:
            spec = specs[0] if name else next((s for s in specs if s.base_url == base_url), specs[0])
            name, expected, base_url = spec.name, spec.model, base_url or spec.base_url
    url = base_url or DEFAULT_BASE_URL
    with LlamaCppClient(url) as client:
        try:
            health = client.health()
        except RemoteError as exc:
            return ProbeResult(url, False, exc.message, (), name, None, expected, None)
        served = tuple(client.models()) if health.ok else ()
        props = client.props() if health.ok else {}
        if props.get("role") == "router" and name is not None and name in served:
            props = client.props(model=name)  # a router's own /props names no model file
    model_path = props.get("model_path") if isinstance(props.get("model_path"), str) else None
    return ProbeResult(
        url, health.ok, health.status, served, name, model_path, expected, _same_file(model_path, expected)
    )


def _same_file(served: str | None, expected: Path | None) -> bool | None:
    if served is None or expected is None:
        return None
    with contextlib.suppress(OSError):
        return Path(served).samefile(expected)  # the same blob under another link counts
    return Path(served) == expected
