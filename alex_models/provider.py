"""A small typed client for an OpenAI-compatible llama.cpp server (``llama-server``, or
``llama_cpp.server``): health, served models, properties, one chat completion.

Keyless by default: a local provider must never receive a remote key. Also ``detect_flags``: how
the installed ``llama-server`` spells its options, read from its ``--help``.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from alex_models.emit import DEFAULT_BASE_URL
from alex_models.emit.flags import ServerFlags, parse_help
from alex_models.errors import RemoteError

if TYPE_CHECKING:
    import httpx2


@dataclass(frozen=True)
class Health:
    """What ``/health`` says (or, where there is none, whether ``/v1/models`` answers)."""

    ok: bool
    status: str
    """The server's word: ``ok``, ``loading model``, or the error."""


@dataclass(frozen=True)
class ChatReply:
    """One chat completion's text, the model that answered, and why it stopped."""

    text: str
    model: str | None
    finish_reason: str | None


class LlamaCppClient:
    """The endpoints of one server. ``base_url`` is the OpenAI-style root (``…/v1``)."""

    def __init__(
        self, base_url: str = DEFAULT_BASE_URL, *, api_key: str | None = None, timeout: float = 30
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Here, not at the top: emit and sync use detect_flags from this module, never the HTTP stack.
        import httpx2  # noqa: PLC0415

        self._http = httpx2.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LlamaCppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, url: str) -> httpx2.Response:
        import httpx2  # noqa: PLC0415 - loaded by __init__ already

        try:
            return self._http.get(url)
        except httpx2.HTTPError as exc:
            raise RemoteError(
                f"no llama.cpp server answers at {self.root}: {type(exc).__name__}",
                hint="start llama-server, or pass --base-url",
            ) from None

    def health(self) -> Health:
        """``/health``; where there is none (llama-cpp-python's server), ``/v1/models`` answering."""
        response = self._get(f"{self.root}/health")
        if response.status_code == 404:
            models = self._get(f"{self.base_url}/models")
            if models.status_code == 200:
                return Health(ok=True, status="ok")
        status = _json(response).get("status") or _json(response).get("error", {}).get("message") or "?"
        return Health(ok=response.status_code == 200, status=str(status))

    def wait_healthy(self, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
        """Poll ``/health`` until the server is ready; a ``RemoteError`` naming the last answer when
        ``process`` (the server, if we started it) exits first or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            code = process.poll() if process is not None else None
            if code is not None:
                raise RemoteError(f"llama-server exited with code {code} before it was ready")
            try:
                health = self.health()
            except RemoteError as exc:
                last = exc.message
            else:
                if health.ok:
                    return
                last = health.status
            if time.monotonic() > deadline:
                raise RemoteError(f"llama-server was not ready after {timeout:.0f} s ({last})")
            time.sleep(0.1)  # a model loads in well under a second; polling faster only burns CPU

    def models(self) -> list[str]:
        """The model ids the server answers to (``/v1/models``)."""
        data = _json(self._get(f"{self.base_url}/models"))
        items = data.get("data") or data.get("models") or []
        return [str(item.get("id") or item.get("name")) for item in items if isinstance(item, dict)]

    def props(self, model: str | None = None) -> dict[str, Any]:
        """llama-server's ``/props`` (``model_path``, generation settings); empty where unsupported.

        A router (``llama-server --models-preset``) answers for itself (``role: router``, no model
        path) unless ``model`` names one of its models, which it then loads if it is not loaded.
        """
        query = f"?model={quote(model, safe='')}" if model is not None else ""
        response = self._get(f"{self.root}/props{query}")
        return _json(response) if response.status_code == 200 else {}

    def chat(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        model: str | None = None,
        max_tokens: int = 16,
        temperature: float = 0.0,
    ) -> ChatReply:
        """One chat completion, not streamed."""
        body: dict[str, Any] = {
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if model is not None:
            body["model"] = model
        import httpx2  # noqa: PLC0415 - loaded by __init__ already

        try:
            response = self._http.post(f"{self.base_url}/chat/completions", json=body)
        except httpx2.HTTPError as exc:
            raise RemoteError(f"chat completion at {self.base_url} failed: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise RemoteError(
                f"chat completion at {self.base_url} answered {response.status_code}: {response.text[:200]}"
            )
        choice = (_json(response).get("choices") or [{}])[0]
        message = choice.get("message") or {}
        return ChatReply(
            text=str(message.get("content") or ""),
            model=_json(response).get("model"),
            finish_reason=choice.get("finish_reason"),
        )


def _json(response: httpx2.Response) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


@functools.cache
def detect_flags(binary: str | None = None) -> ServerFlags:
    """The installed llama-server's names (``binary``, else the one on PATH), or the built-in ones.

    Here, not among the emitters, which stay pure: this runs a program.
    """
    path = binary or shutil.which("llama-server")
    if path is None:
        return ServerFlags()
    try:
        # The user's own llama-server, found on PATH or named by them: nothing untrusted runs here.
        done = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=20, check=False)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return ServerFlags()
    return parse_help(done.stdout + done.stderr, source=f"{path} --help")
