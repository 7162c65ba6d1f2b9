"""A registry token service for the tests, as distribution's token auth specifies it
(distribution.github.io/distribution/spec/auth/jwt): ``GET /token?service=…&scope=…`` on
loopback answers a JWT signed (RS256) with a test key whose self-signed certificate the registry
is told to trust (``rootcertbundle``); the certificate rides in the token's ``x5c`` header, which
is how distribution 2.8 finds the key.

Like Docker Hub's: Basic credentials are checked (wrong ones are a 401), a login gets every action
it asks for, and an anonymous caller gets ``pull`` only when ``anonymous_pull`` (else a token that
grants nothing, and the registry refuses the request); on a repository in ``refused`` nobody is
granted anything (a login without read rights there). Its log records each request's scopes,
whether it carried a login, and the status.
"""

from __future__ import annotations

import base64
import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from registrykit import PASSWORD, USER

SERVICE = "alex-test-registry"
ISSUER = "alex-test-tokens"
LIFETIME = 300
"""Seconds a token is valid, as Docker Hub's are."""


@dataclass(frozen=True)
class Asked:
    """One request the token service answered."""

    scopes: tuple[str, ...]
    """As asked, with each scope's actions sorted: distribution names the same actions
    ``pull,push`` one time and ``push,pull`` the next."""
    login: bool
    status: int


def _sorted_actions(scope: str) -> str:
    kind, _, actions = scope.rpartition(":")
    return f"{kind}:{','.join(sorted(actions.split(',')))}" if kind else scope


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenService:
    """Signs tokens for the registry whose config ``auth_config`` gives; ``start`` before use."""

    folder: Path
    anonymous_pull: bool = True
    refused: set[str] = field(default_factory=set)
    log: list[Asked] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.bundle = self.folder / "tokens.pem"
        self.bundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.realm = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        self._lock = threading.Lock()

    def auth_config(self) -> str:
        """The ``auth:`` section of a registry config that trusts this service."""
        return (
            "auth:\n  token:\n"
            f"    realm: {self.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {self.bundle}\n"
        )

    def start(self) -> TokenService:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def asked(self) -> list[Asked]:
        with self._lock:
            return list(self.log)

    def token(self, scopes: list[str], *, login: bool) -> str:
        """A signed token granting ``scopes``: every action to a login, pull alone (or nothing) to
        an anonymous caller."""
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            granted = wanted if login else [a for a in wanted if a == "pull" and self.anonymous_pull]
            if name in self.refused:
                granted = []
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": USER if login else "",
            "aud": SERVICE,
            "exp": now + LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode("ascii")]}
        signed = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signed.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64(signature)}"

    def _answer(self, path: str, authorization: str | None) -> tuple[int, bytes]:
        query = parse_qs(urlsplit(path).query)
        if not path.startswith("/token") or query.get("service") != [SERVICE]:
            return 400, b'{"details": "unknown service"}'
        login = authorization is not None
        if login:
            expected = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode("ascii")
            if authorization != f"Basic {expected}":
                return 401, b'{"details": "incorrect username or password"}'
        token = self.token(query.get("scope", []), login=login)
        body = {"token": token, "access_token": token, "expires_in": LIFETIME}
        return 200, json.dumps(body).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                authorization = self.headers.get("Authorization")
                status, body = service._answer(self.path, authorization)
                asked = parse_qs(urlsplit(self.path).query).get("scope", [])
                scopes = tuple(_sorted_actions(scope) for scope in asked)
                with service._lock:
                    service.log.append(Asked(scopes, authorization is not None, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the service keeps its own log."""

        return Handler
