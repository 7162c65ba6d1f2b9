"""Who we are to a registry: credentials from the container tools' files, and the answers to a
registry's ``WWW-Authenticate`` challenges (Basic, or a Bearer token from its token service).

Credentials are read, never written, from the first of these files that exists, as podman and
docker read them: ``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json``.
A login is an ``auths`` entry (``auth``: base64 of ``user:password``, or ``username`` and
``password``) or what a credential helper (``credHelpers``, ``credsStore``) answers to
``docker-credential-<name> get``; identity tokens (OAuth refresh tokens) are not used yet. A
secret goes only to the registry it is filed under, or to the token service that registry's
challenge names, and never into a message.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from alex_models.errors import RemoteError, UserError

_PARAM_RE = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^\s,]+)')
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_HELPER_TIMEOUT = 60
"""Seconds a credential helper may take: it may wait for a keychain to be unlocked."""


class AccessDenied(RemoteError):
    """The registry, or its token service, refused us: a push's mount from a repository we may
    not pull falls back to an upload on this (``Registry.mount``); anywhere else it is exit 4."""


@dataclass(frozen=True)
class Login:
    """A user name and its secret for one registry."""

    username: str
    password: str = field(repr=False)

    def basic(self) -> str:
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")


def auth_file() -> Path | None:
    """The credentials file the container tools would read, if any exists."""
    candidates = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        candidates.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("DOCKER_CONFIG"):
        candidates.append(Path(os.environ["DOCKER_CONFIG"]) / "config.json")
    candidates.append(Path.home() / ".docker" / "config.json")
    return next((path for path in candidates if path.is_file()), None)


def _host_of(key: str) -> str:
    """An ``auths`` key as a host: ``https://ghcr.io/v1/`` and ``ghcr.io`` name the same registry."""
    host = key.split("://", 1)[-1].split("/", 1)[0].lower()
    return "docker.io" if host in _DOCKER_HUB else host


def login_for(registry: str) -> Login | None:
    """The login filed for ``registry`` (``host[:port]``), or None: then we ask anonymously.

    As docker looks: the helper ``credHelpers`` names for the registry, else its ``auths`` entry,
    else the ``credsStore`` helper (where ``docker login`` keeps secrets on Docker Desktop)."""
    path = auth_file()
    if path is None:
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as JSON: {exc}", hint="fix or remove that file") from None
    if not isinstance(document, dict):
        return None
    wanted = _host_of(registry)
    auths = _mapping(document, "auths")
    # The server address as filed (Docker Hub's is https://index.docker.io/v1/): a helper is asked that.
    filed = next((key for key in auths if _host_of(key) == wanted), registry)
    helpers = _mapping(document, "credHelpers")
    helper = next((name for key, name in helpers.items() if _host_of(key) == wanted), None)
    if isinstance(helper, str) and helper:
        return _from_helper(path, helper, next(k for k in helpers if _host_of(k) == wanted))
    found = _from_entry(path, registry, filed, auths.get(filed))
    store = document.get("credsStore")
    if found is None and isinstance(store, str) and store:
        return _from_helper(path, store, filed)
    return found


def _mapping(document: dict[str, object], key: str) -> dict[str, object]:
    found = document.get(key)
    return found if isinstance(found, dict) else {}


def _from_entry(path: Path, registry: str, key: str, entry: object) -> Login | None:
    """An ``auths`` entry's login: ``auth`` (base64 of ``user:password``), or the two fields."""
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("auth"), str) and entry["auth"]:
        try:
            user, _, secret = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise UserError(
                f"{path}: the auth entry for {key} is not base64 of user:password",
                hint=f"log in again: docker login {registry}",
            ) from None
        return Login(user, secret)
    if isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        return Login(entry["username"], entry["password"])
    return None


def _from_helper(path: Path, name: str, server: str) -> Login | None:
    """Ask ``docker-credential-<name> get`` for ``server``'s login, as docker does; None when the
    helper has none (or holds an identity token, which we cannot use yet)."""
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        raise UserError(
            f"{path} names the credential helper docker-credential-{name}, which is not on PATH",
            hint="install it, or add an auths entry for the registry (or point REGISTRY_AUTH_FILE at one)",
        )
    try:
        run = subprocess.run(  # noqa: S603 - the helper the user's config names, as docker runs it
            [program, "get"],
            input=server,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(
            f"docker-credential-{name} get failed: {type(exc).__name__}", hint="run it by hand to see why"
        ) from None
    if run.returncode != 0:
        return None  # "credentials not found": anonymous, as docker goes on without a login
    try:
        answer = json.loads(run.stdout)
        user, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise UserError(
            f"docker-credential-{name} get answered no JSON login for {server}",
            hint="run it by hand to see what it prints",
        ) from None
    if not isinstance(user, str) or not isinstance(secret, str) or user == "<token>":
        return None
    return Login(user, secret)


def challenge(header: str) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="…",service="…",scope="…"`` as (``bearer``, its params)."""
    scheme, _, rest = header.strip().partition(" ")
    params = {}
    for match in _PARAM_RE.finditer(rest):
        key = match[1] or match[3]
        params[key.lower()] = match[2] if match[1] else match[4]
    return scheme.lower(), params


class Authorizer:
    """The ``Authorization`` a registry wants, learned from its challenges and kept for the session
    (one token service round trip per scope, not per request)."""

    def __init__(self, registry: str, login: Login | None, scope: str) -> None:
        self.registry = registry
        self.login = login
        self.scope = scope
        """What we ask a token service for when a challenge names no scope (the ``/v2/`` ping)."""
        self._header: str | None = None
        self._asked: frozenset[str] = frozenset()
        """The scope the current token was asked for (``_scopes``)."""
        self._lock = threading.Lock()

    @property
    def header(self) -> Mapping[str, str]:
        """The header to send now: none until a challenge said what to send."""
        return {"Authorization": self._header} if self._header else {}

    def answer(self, client: httpx2.Client, response: httpx2.Response, sent: str | None) -> bool:
        """Learn from a 401 ``response`` to a request sent with ``sent`` (its Authorization); False
        when there is nothing new to try (then the request is denied)."""
        with self._lock:
            if self._header != sent:
                return True  # another thread answered this challenge meanwhile
            scheme, params = challenge(response.headers.get("WWW-Authenticate", ""))
            if scheme == "basic":
                header = self.login.basic() if self.login is not None else None
            elif scheme == "bearer" and params.get("realm"):
                wanted = _scopes(params.get("scope") or self.scope)
                if params.get("error") == "insufficient_scope" and sent is not None and wanted == self._asked:
                    return False  # this very scope was asked for: the token service did not grant it
                header = "Bearer " + self._token(client, params)
                self._asked = wanted
            else:
                return False
            if header is None or header == sent:
                return False
            self._header = header
            return True

    def _token(self, client: httpx2.Client, params: dict[str, str]) -> str:
        """A token from the realm the challenge names: anonymous, or with our login (Basic)."""
        query: dict[str, str | list[str]] = {"service": params["service"]} if params.get("service") else {}
        # A mount's challenge names two scopes, space-separated (pull, push on the target; pull on
        # the source): each is its own scope= parameter, as the token spec has several asked.
        query["scope"] = (params.get("scope") or self.scope).split()
        realm = params["realm"]
        if not realm.startswith("https://") and not _loopback(realm):
            raise RemoteError(
                f"{self.registry}: its token service {realm} is not HTTPS",
                hint="a token sent over plain HTTP can be read on the way; fix the registry's auth realm",
            )
        headers = {"Authorization": self.login.basic()} if self.login is not None else {}
        try:
            response = client.get(realm, params=query, headers=headers)
        except httpx2.HTTPError as exc:
            raise RemoteError(
                f"{self.registry}: its token service {realm} failed: {type(exc).__name__}",
                hint="check the network, then run the same command again",
            ) from None
        if response.status_code in (401, 403):
            raise self.denied(response.status_code)
        token = None
        if response.status_code == 200:
            try:
                body = response.json()
                token = body.get("token") or body.get("access_token")
            except (ValueError, AttributeError):
                token = None
        if not isinstance(token, str) or not token:
            raise RemoteError(
                f"{self.registry}: its token service {realm} answered {response.status_code} without a token",
                hint="the registry's auth misbehaves; try again later",
            )
        return token

    def denied(self, status: int) -> AccessDenied:
        """Access refused: name the registry and where credentials come from, never the secret."""
        if self.login is None:
            where = auth_file()
            how = (
                f"no login for {self.registry} in {where}: docker login {self.registry}"
                if where is not None
                else f"log in first: docker login {self.registry} (or set REGISTRY_AUTH_FILE)"
            )
        else:
            how = f"check the login for {self.registry} in {auth_file()} (docker login {self.registry})"
        return AccessDenied(f"{self.registry}: access denied ({status})", hint=how)


def _scopes(scope: str) -> frozenset[str]:
    """A challenge's scope as a set, its actions in any order: the registry may name the scope it
    asked for as ``pull,push`` first and ``push,pull`` later."""
    found: set[str] = set()
    for part in scope.split():
        kind, _, actions = part.rpartition(":")
        found.update(f"{kind}:{action}" for action in actions.split(","))
    return frozenset(found)


def _loopback(url: str) -> bool:
    host = httpx2.URL(url).host
    return host in ("localhost", "::1") or host.startswith("127.")
