"""Use case ``demo``: the whole path, lock -> sync -> emit -> llama-server, on this machine alone.

The mirror server, on a free loopback port, serves one generated model (``write_tiny_llama``: a
real llama with random weights, about 250 KB). A project locks it, syncs it into its own store and
emits llama-server's command line; when a llama-server is installed, it is started from that
command line and answers one chat completion. No network, no token, no configuration is needed,
and nothing outlives the call: the server and the mirror stop and the files go, on errors and
Ctrl-C too (``keep`` keeps the project and its store)::

    <scratch>/                   a temporary directory, always removed
        built/, mirror/          the generated model, the mirror's repos
        llama-server.log
        project/                 the workspace, unless ``keep`` names another
    <workspace>/
        models.yaml, models.lock
        store/                   the demo's store (the user's ALEX_MODELS_HOME is never touched)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from alex_models._fs import atomic_write
from alex_models._platform import new_process_group, remove_tree
from alex_models.api._context import read_lock
from alex_models.api._emit import emit
from alex_models.api._project import lock
from alex_models.api._sync import SyncOptions, sync
from alex_models.emit.flags import ServerFlags
from alex_models.errors import Interrupted, RemoteError, UsageError, UserError, exit_code_of
from alex_models.lock import LockedFile
from alex_models.provider import detect_flags
from alex_models.settings import Settings

LLAMA_SERVER_VARIABLE = "ALEX_MODELS_LLAMA_SERVER"
REPO = "alex-demo/tiny-llama-GGUF"
NAME = "tiny-llama"
FILE = "tiny-llama-F16.gguf"
PROMPT = "Say hello."
HEALTH_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_LOG_TAIL_LINES = 20
_MANIFEST = """\
# Written by 'alex-models demo': one model, from a mirror server on this machine.
version: 1
store: store    # this folder's own store (ALEX_MODELS_HOME, when set, wins)
models:
  {name}:
    repo: {repo}
    quant: F16
    runtime: {{host: 127.0.0.1, port: {port}, ctx_size: 256}}
"""


@dataclass(frozen=True)
class MirrorStep:
    """The mirror server is up and serves the generated model."""

    endpoint: str
    repo: str
    file: str
    size: int


@dataclass(frozen=True)
class LockStep:
    """``lock`` pinned the model: the commit the mirror serves and every file's size and SHA256."""

    lock_path: Path
    repo: str
    commit: str
    files: tuple[LockedFile, ...]


@dataclass(frozen=True)
class SyncStep:
    """``sync`` downloaded and verified the locked files into the demo's store."""

    store: Path
    downloaded: tuple[str, ...]
    bytes_received: int
    seconds: float
    model: Path
    """The view llama-server loads."""


@dataclass(frozen=True)
class EmitStep:
    """``emit llama-server``: the command line that serves the locked model."""

    argv: tuple[str, ...]


@dataclass(frozen=True)
class ChatStep:
    """One chat completion from llama-server, or why there was none."""

    llama_server: Path | None
    """None: no llama-server was found, and the step was skipped."""
    base_url: str | None
    prompt: str
    reply: str | None
    seconds: float

    @property
    def skipped(self) -> bool:
        return self.llama_server is None


DemoStep = MirrorStep | LockStep | SyncStep | EmitStep | ChatStep


@dataclass(frozen=True)
class DemoResult:
    """What ``demo`` did, step by step, and where."""

    steps: tuple[DemoStep, ...]
    """Mirror, lock, sync, emit and chat, in the order they ran."""
    workspace: Path
    """The project folder: models.yaml, models.lock and its store."""
    kept: bool
    """Whether ``workspace`` still exists (``keep``); otherwise nothing the demo made is left."""


def find_llama_server(environ: Mapping[str, str] | None = None) -> Path | None:
    """``ALEX_MODELS_LLAMA_SERVER`` if set (it must be executable), else ``llama-server`` on PATH."""
    env = os.environ if environ is None else environ
    named = env.get(LLAMA_SERVER_VARIABLE)
    if named:
        path = Path(named).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise UserError(
                f"{LLAMA_SERVER_VARIABLE}={named} is not an executable file",
                hint=f"point {LLAMA_SERVER_VARIABLE} at a llama-server binary, or unset it",
            )
        return path
    found = shutil.which("llama-server", path=env.get("PATH"))
    return None if found is None else Path(found)


def demo(
    *,
    keep: Path | None = None,
    llama_server: Path | None = None,
    on_step: Callable[[DemoStep], None] | None = None,
    health_timeout: float = HEALTH_TIMEOUT,
) -> DemoResult:
    """Run lock -> sync -> emit (-> llama-server and one chat) against a local mirror; clean up.

    ``on_step`` sees each step as it finishes. ``keep`` (a new or empty directory) receives the
    project and its store and is left in place. ``llama_server`` defaults to ``find_llama_server()``;
    without one, the chat step is skipped.
    """
    if keep is not None and keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise UsageError(f"{keep} is not an empty directory", hint="name a new or empty directory for --keep")
    if Settings.from_env().offline:
        raise UserError(
            "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE), and it refuses even the demo's "
            "mirror on this machine",
            hint="run it as 'HF_HUB_OFFLINE= TRANSFORMERS_OFFLINE= alex-models demo'",
        )
    binary = llama_server or find_llama_server()
    steps: list[DemoStep] = []

    def done(step: DemoStep) -> None:
        steps.append(step)
        if on_step is not None:
            on_step(step)

    scratch = Path(tempfile.mkdtemp(prefix="alex-models-demo-"))
    workspace = (keep or scratch / "project").absolute()  # emitted paths are absolute
    # Unwound in reverse: llama-server, then the mirror, then the scratch directory.
    with _interrupt_says_what_is_left(workspace, keep is not None), contextlib.ExitStack() as cleanup:
        cleanup.callback(remove_tree, scratch)
        workspace.mkdir(parents=True, exist_ok=True)
        store = workspace / "store"
        served = cleanup.enter_context(_mirror(scratch))
        done(served)
        manifest = workspace / "models.yaml"
        port = _free_port()
        atomic_write(manifest, _MANIFEST.format(name=NAME, repo=REPO, port=port).encode())
        done(_lock(manifest, served.endpoint))
        # No token: the user's Hugging Face token has no business with the demo's mirror.
        synced = sync(manifest, SyncOptions(endpoint=served.endpoint, token=""), store_home=store)
        (model,) = synced.models
        if model.main is None:  # the manifest asks for one model file: sync links its view
            raise UserError(f"sync linked no model file for {NAME}")
        done(SyncStep(synced.store, synced.downloaded, synced.bytes_received, synced.seconds, model.main))
        flags = detect_flags(str(binary)) if binary is not None else ServerFlags()
        emitted = emit("llama-server", manifest, as_json=True, store_home=store, flags=flags)
        argv = tuple(json.loads(emitted.text)["argv"])
        done(EmitStep(argv))
        if binary is None:
            done(ChatStep(None, None, PROMPT, None, 0.0))
        else:
            base_url = f"http://127.0.0.1:{port}/v1"
            process = cleanup.enter_context(_running([str(binary), *argv[1:]], scratch / "llama-server.log"))
            done(_chat(binary, process, base_url, scratch / "llama-server.log", health_timeout))
    return DemoResult(tuple(steps), workspace, kept=keep is not None)


@contextlib.contextmanager
def _interrupt_says_what_is_left(workspace: Path, kept: bool) -> Iterator[None]:
    """Ctrl-C or SIGTERM (exit 130 or 143) says that the demo cleaned up, not how to resume it."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        left = f"the project stays in {workspace}" if kept else "the demo's files are removed"
        raise Interrupted(
            f"interrupted; the servers are stopped and {left}", exit_code=exit_code_of(interrupt)
        ) from None


@contextlib.contextmanager
def _mirror(scratch: Path) -> Iterator[MirrorStep]:
    """The mirror server, serving the tiny llama as ``REPO``, until the block ends."""
    from alex_models.mirror import MirrorRoot, MirrorServer  # noqa: PLC0415
    from alex_models.tinymodels import write_tiny_llama  # noqa: PLC0415 - numpy and gguf

    built = scratch / "built"
    built.mkdir()
    (path,) = write_tiny_llama(built / FILE)
    root = MirrorRoot(scratch / "mirror")
    root.commit(REPO, {FILE: path})
    with MirrorServer(root.root, host="127.0.0.1") as server:
        yield MirrorStep(server.url, REPO, FILE, path.stat().st_size)


def _lock(manifest: Path, endpoint: str) -> LockStep:
    from alex_models.hub import HubRemote  # noqa: PLC0415 - huggingface_hub

    # An empty token: the user's Hugging Face token has no business with the demo's mirror.
    remote = HubRemote(endpoint, token="", offline=False)
    try:
        result = lock(manifest, remote=remote)
    finally:
        remote.close()
    locked = read_lock(result.lock_path)
    if locked is None or locked.models[NAME].commit is None:  # lock() just wrote it
        raise UserError(f"{result.lock_path} was not written")
    entry = locked.models[NAME]
    return LockStep(result.lock_path, REPO, str(entry.commit), tuple(entry.files))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _running(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``argv`` running, output to ``log``, until the block ends; then terminated (killed if it lingers)."""
    with log.open("wb") as out:
        # Its own session: a Ctrl-C reaches the demo, which stops the server itself, in order.
        process = subprocess.Popen(  # noqa: S603 - the user's own llama-server
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **new_process_group()
        )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _chat(
    binary: Path, process: subprocess.Popen[bytes], base_url: str, log: Path, health_timeout: float
) -> ChatStep:
    from alex_models.provider import LlamaCppClient  # noqa: PLC0415 - the HTTP stack

    began = time.monotonic()
    with LlamaCppClient(base_url, timeout=60) as client:
        try:
            client.wait_healthy(health_timeout, process)
        except RemoteError as exc:
            _fail(exc.message, log)
        reply = client.chat([{"role": "user", "content": PROMPT}], model=NAME, max_tokens=16)
    return ChatStep(binary, base_url, PROMPT, reply.text, time.monotonic() - began)


def _fail(problem: str, log: Path) -> NoReturn:
    tail = "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-_LOG_TAIL_LINES:])
    raise RemoteError(
        f"{problem}; the end of its log:\n{tail}",
        hint=f"set {LLAMA_SERVER_VARIABLE} to another llama-server, or take it off PATH to skip the chat",
    )
