"""Who we are to a registry: credentials from the container tools' files, and the answers to a
registry's ``WWW-Authenticate`` challenges (Basic, or a Bearer token from its token service).

Credentials are read, never written, from the first of these files that exists, as podman and
docker read them: ``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``, ``~/.docker/config.json``.
Only ``auths`` entries are used (``auth``: base64 of ``user:password``, or ``username`` and
``password``); credential helpers (``credsStore``, ``credHelpers``) are not run yet, which the
denied message says. A secret goes only to the registry it is filed under, or to the token
service that registry's challenge names, and never into a message.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from alex_models.errors import RemoteError, UserError

_PARAM_RE = re.compile(r'(\w+)="([^"]*)"|(\w+)=([^\s,]+)')
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


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
    """The login filed for ``registry`` (``host[:port]``), or None: then we ask anonymously."""
    path = auth_file()
    if path is None:
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read it as JSON: {exc}", hint="fix or remove that file") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = _host_of(registry)
    for key, entry in auths.items():
        if _host_of(key) != wanted or not isinstance(entry, dict):
            continue
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
                header = "Bearer " + self._token(client, params)
            else:
                return False
            if header is None or header == sent:
                return False
            self._header = header
            return True

    def _token(self, client: httpx2.Client, params: dict[str, str]) -> str:
        """A token from the realm the challenge names: anonymous, or with our login (Basic)."""
        query = {"service": params["service"]} if params.get("service") else {}
        query["scope"] = params.get("scope") or self.scope
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

    def denied(self, status: int) -> RemoteError:
        """Access refused: name the registry and where credentials come from, never the secret."""
        if self.login is None:
            where = auth_file()
            how = (
                f"no login for {self.registry} in {where} (credential helpers are not run yet: "
                "add an auths entry)"
                if where is not None
                else f"log in first: docker login {self.registry} (or set REGISTRY_AUTH_FILE)"
            )
        else:
            how = f"check the login for {self.registry} in {auth_file()} (docker login {self.registry})"
        return RemoteError(f"{self.registry}: access denied ({status})", hint=how)


def _loopback(url: str) -> bool:
    host = httpx2.URL(url).host
    return host in ("localhost", "::1") or host.startswith("127.")
