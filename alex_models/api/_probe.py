"""Use case ``probe``: are the llama.cpp servers up, and is each serving its locked file?

Without ``name``, every locked model that llama-server can serve is looked for at the address its
``runtime`` gives (``ServerSpec.base_url``), each address asked once:

- a router (``llama-server --models-preset``, ``/props`` says ``role: router``) serves several
  models at one address: each model it should serve is asked for by name (``/props?model=``);
- a plain server serves one file: when several models share its address, it is right if it
  serves one of them (only one can run there at a time), and the report names which.

With ``base_url`` and no ``name``, the server there is checked against every locked model it
could be serving.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alex_models.api._context import require_lock, store_for
from alex_models.emit import DEFAULT_BASE_URL, ServerSpec, server_specs
from alex_models.errors import RemoteError
from alex_models.lock import Lock
from alex_models.manifest import load_manifest
from alex_models.provider import LlamaCppClient


@dataclass(frozen=True)
class ProbeResult:
    """One model looked for at one address (or, with no locked model to look for, the server)."""

    base_url: str
    up: bool
    status: str
    served: tuple[str, ...]
    """Model ids the server answers to."""
    name: str | None
    """The locked model probed for; None with no manifest, or when the server serves none of
    ``candidates``."""
    model_path: str | None
    """The file the server says it loaded (llama-server's /props)."""
    expected: Path | None
    """The locked file of ``name``."""
    matches: bool | None
    """True or False when the served file could be compared with the lock; None when it could not."""
    candidates: tuple[str, ...] = ()
    """The locked models looked for at this address, when the result names none of them (the
    server serves none of them, or is not up to say which)."""
    synced: bool = True
    """Whether ``name`` is synced in this host's store; when not, there is no locked file here to
    compare the served one with (``expected`` and ``matches`` are None)."""

    @property
    def ok(self) -> bool:
        served = self.name is None or self.name in self.served or self.matches is True
        return self.up and served and self.matches is not False


@dataclass(frozen=True)
class ProbeReport:
    """Every server ``probe`` asked, and whether each serves its locked file (``ok``: all do)."""

    results: tuple[ProbeResult, ...]
    """One per model looked for, in manifest order (one per server with nothing to look for)."""

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(result.ok for result in self.results)


def probe(
    base_url: str | None = None,
    name: str | None = None,
    manifest_path: Path = Path("models.yaml"),
    store_home: Path | None = None,
) -> ProbeReport:
    """Ask the server at ``base_url`` (default: each address the manifest gives) what it serves."""
    specs: list[ServerSpec] = []
    unsynced: set[str] = set()
    if manifest_path.exists():
        manifest = load_manifest(manifest_path)
        _, lock = require_lock(manifest_path, None)
        store = store_for(manifest_path, store_home)
        specs = server_specs(
            manifest,
            lock,
            store.view_path,
            manifest_path.parent.absolute(),
            [name] if name else _servable(lock, manifest.models),
        )
        # Store.model_state is the one meaning of "synced" (status, path and emit use it too): a
        # model not synced here has no locked file on this host to compare a server's with.
        unsynced = {spec.name for spec in specs if not store.model_state(lock.models[spec.name]).synced}
    if base_url is not None or not specs:
        return ProbeReport(tuple(_ask(base_url or DEFAULT_BASE_URL, specs, unsynced, could_be=name is None)))
    by_url: dict[str, list[ServerSpec]] = {}
    for spec in specs:
        by_url.setdefault(spec.base_url, []).append(spec)
    asked = (_ask(url, group, unsynced, could_be=False) for url, group in by_url.items())
    return ProbeReport(tuple(result for results in asked for result in results))


def _servable(lock: Lock, names: Iterable[str]) -> list[str]:
    """The manifest's models that are locked with a GGUF a server can load."""
    return [name for name in names if name in lock.models and lock.models[name].model_files]


def _ask(url: str, specs: list[ServerSpec], unsynced: set[str], *, could_be: bool) -> list[ProbeResult]:
    """What the server at ``url`` serves, compared with each of ``specs``.

    ``could_be``: the server may be serving any of ``specs`` (given ``--base-url`` alone), and
    only what it serves is reported; otherwise a router must serve each of them.
    """
    with LlamaCppClient(url) as client:
        try:
            health = client.health()
        except RemoteError as exc:
            return _not_up(url, exc.message, specs, unsynced, could_be=could_be)
        if not health.ok:
            return _not_up(url, health.status, specs, unsynced, could_be=could_be)
        served = tuple(client.models())
        props = client.props()
        router = props.get("role") == "router"
        if router:  # a router's own /props names no model file: ask it for each model, by name
            asked = [spec for spec in specs if spec.name in served or not could_be]
            results = [
                _result(
                    url,
                    health.status,
                    served,
                    spec,
                    client.props(model=spec.name) if spec.name in served else {},
                    synced=spec.name not in unsynced,
                )
                for spec in asked
            ]
        else:
            results = [
                _result(url, health.status, served, spec, props, synced=spec.name not in unsynced)
                for spec in specs
            ]
            if len(specs) > 1:  # one model runs at a shared address: report the one it serves
                results = [result for result in results if result.name in served or result.matches is True]
    if results:
        return results
    model_path = None if router else _model_path(props)
    matches = False if specs else None  # with nothing locked to look for, up is all there is to know
    candidates = tuple(spec.name for spec in specs)
    return [ProbeResult(url, True, health.status, served, None, model_path, None, matches, candidates)]


def _not_up(
    url: str, status: str, specs: list[ServerSpec], unsynced: set[str], *, could_be: bool
) -> list[ProbeResult]:
    """Each model looked for, down; one line naming them all when any of them could have been it."""
    if specs and not (could_be and len(specs) > 1):
        return [
            ProbeResult(
                url,
                False,
                status,
                (),
                spec.name,
                None,
                None if spec.name in unsynced else spec.model,
                None,
                synced=spec.name not in unsynced,
            )
            for spec in specs
        ]
    candidates = tuple(spec.name for spec in specs)
    return [ProbeResult(url, False, status, (), None, None, None, None, candidates)]


def _result(
    url: str,
    status: str,
    served: tuple[str, ...],
    spec: ServerSpec,
    props: dict[str, object],
    *,
    synced: bool,
) -> ProbeResult:
    model_path = _model_path(props)
    expected = spec.model if synced else None
    return ProbeResult(
        url,
        True,
        status,
        served,
        spec.name,
        model_path,
        expected,
        _same_file(model_path, expected),
        synced=synced,
    )


def _model_path(props: dict[str, object]) -> str | None:
    path = props.get("model_path")
    return path if isinstance(path, str) else None


def _same_file(served: str | None, expected: Path | None) -> bool | None:
    if served is None or expected is None:
        return None
    with contextlib.suppress(OSError):
        return Path(served).samefile(expected)  # the same blob under another link counts
    return Path(served) == expected
