"""End to end with a real llama.cpp runtime: lock → sync → emit → start the server from what was
emitted → probe → one chat completion.

The model is ``write_tiny_llama``'s: a real (random-weight) llama that llama.cpp loads in a blink,
published in the mirror server as one file and as a 3-way split model. The runtime is the
``llama-server`` named by ``ALEX_MODELS_LLAMA_SERVER`` (``.ci/run`` sets it to the binary that
``.ci/llama-server.sh`` builds and caches), else the one on ``PATH``; for the llama-cpp-python test,
``llama_cpp.server`` importable from this interpreter. A missing runtime fails these tests, it never
skips them. Marker ``runtime``: not in the default run; ``pytest -m runtime`` runs them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from helpers import (
    CLI,
    cdn_gets,
    free_port,
    mirror_process,
    sha_file,
    since_settled,
    wait_for,
    write_manifest,
)

from alex_models import api
from alex_models.emit.flags import ServerFlags
from alex_models.errors import RemoteError
from alex_models.ggufinfo import read_gguf
from alex_models.lock import loads as load_lock
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.provider import LlamaCppClient, detect_flags
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_llama

pytestmark = pytest.mark.runtime

LLAMA_SERVER_VARIABLE = "ALEX_MODELS_LLAMA_SERVER"
HEALTH_TIMEOUT = 60.0
SINGLE_REPO, SPLIT_REPO = "tiny/llama", "tiny/llama-split"
SINGLE_FILE = "tiny-llama-F16.gguf"
DRAFT_REPO, DRAFT_FILE = "tiny/draft", "tiny-draft-F16.gguf"
SPLIT_FILES = tuple(f"tiny-llama-split-F16-{n:05d}-of-00003.gguf" for n in (1, 2, 3))
HELLO = [{"role": "user", "content": "hello world"}]


# -- the runtime -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def llama_server() -> Path:
    """The llama-server binary; the test fails, naming what to do, when there is none."""
    named = os.environ.get(LLAMA_SERVER_VARIABLE)
    if named:
        path = Path(named)
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"{LLAMA_SERVER_VARIABLE}={named} is not an executable file", pytrace=False)
        return path
    found = shutil.which("llama-server")
    if found is None:
        pytest.fail(
            f"no llama-server: set {LLAMA_SERVER_VARIABLE} to the path 'bash .ci/llama-server.sh' "
            "prints (it builds and caches one), or put llama-server on PATH",
            pytrace=False,
        )
    return Path(found)


@pytest.fixture(scope="session")
def flags(llama_server: Path) -> ServerFlags:
    """The option names this llama-server's --help shows, as ``emit`` follows them."""
    return detect_flags(str(llama_server))


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log: Path
    base_url: str

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


@contextlib.contextmanager
def serving(
    argv: Sequence[str], port: int, log: Path, *, env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """``argv`` running (in its own process group, with the router's children) until the block ends,
    and answering ``/health`` with 200 before the block begins."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    server = Server(process, log, f"http://127.0.0.1:{port}/v1")
    try:
        wait_healthy(server)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def wait_healthy(server: Server) -> None:
    """Poll ``/health`` until it answers 200, the process dies, or HEALTH_TIMEOUT passes."""
    with LlamaCppClient(server.base_url, timeout=5) as client:
        try:
            client.wait_healthy(HEALTH_TIMEOUT, server.process)
        except RemoteError as exc:
            pytest.fail(f"{exc.message}:\n{server.log_tail()}")


# -- the project -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Project:
    folder: Path
    manifest: Path
    port: int


@pytest.fixture
def published(
    mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiny llama in the mirror: as one file, and as a 3-way split model."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    built = tmp_path / "built"
    built.mkdir()
    (single,) = write_tiny_llama(built / SINGLE_FILE, seed=1)
    shards = write_tiny_llama(built / "tiny-llama-split-F16.gguf", seed=2, split=3)
    assert [shard.name for shard in shards] == list(SPLIT_FILES)
    mirror_root.commit(SINGLE_REPO, {SINGLE_FILE: single})
    mirror_root.commit(SPLIT_REPO, {shard.name: shard for shard in shards})


def synced_project(folder: Path, *names: str) -> Project:
    """models.yaml with ``names`` (of ``tiny``, ``tiny-split``) served on a free port, locked and synced."""
    port = free_port()
    runtime = {"port": port, "ctx_size": 256}
    available = {
        "tiny": {"repo": SINGLE_REPO, "quant": "F16", "runtime": runtime},
        "tiny-split": {"repo": SPLIT_REPO, "quant": "F16", "runtime": runtime},
    }
    manifest = write_manifest(folder, {name: available[name] for name in names})
    api.lock(manifest)
    result = api.sync(manifest)
    assert [model.name for model in result.models] == list(names)
    return Project(folder, manifest, port)


def emitted(
    project: Project, format_name: str, out: str, flags: ServerFlags, *, as_json: bool = False
) -> str:
    """``emit FORMAT --out OUT`` in the project; the file's text."""
    path = project.folder / out
    result = api.emit(format_name, project.manifest, out=path, flags=flags, as_json=as_json)
    assert result.path == path
    return path.read_text(encoding="utf-8")


def assert_probe_matches(project: Project, name: str, base_url: str | None = None) -> api.ProbeResult:
    [result] = api.probe(base_url, name, project.manifest).results
    assert result.up, result.status
    assert name in result.served
    assert result.matches is True, (result.model_path, result.expected)
    assert result.ok
    return result


def assert_chats(base_url: str, model: str) -> None:
    with LlamaCppClient(base_url, timeout=60) as client:
        reply = client.chat(HELLO, model=model, max_tokens=8)
    assert reply.text, reply
    assert reply.finish_reason in {"length", "stop"}


# -- the model -------------------------------------------------------------------------------------


def test_tiny_llama_is_the_same_bytes_for_the_same_seed_and_small(tmp_path: Path) -> None:
    first = [p.read_bytes() for p in write_tiny_llama(tmp_path / "a.gguf", seed=7, split=3)]
    again = [p.read_bytes() for p in write_tiny_llama(tmp_path / "b.gguf", seed=7, split=3)]
    other = [p.read_bytes() for p in write_tiny_llama(tmp_path / "c.gguf", seed=8, split=3)]
    assert first == again
    assert first != other
    assert 100_000 < sum(map(len, first)) < 1_000_000


# -- llama-server ----------------------------------------------------------------------------------


def test_llama_server_serves_the_locked_model_from_the_emitted_argv(
    published: None, project: Path, llama_server: Path, flags: ServerFlags, tmp_path: Path
) -> None:
    proj = synced_project(project, "tiny")
    argv = json.loads(emitted(proj, "llama-server", "tiny.json", flags, as_json=True))["argv"]
    assert argv[0] == "llama-server"
    assert argv[argv.index("--port") + 1] == str(proj.port)

    with serving([str(llama_server), *argv[1:]], proj.port, tmp_path / "server.log") as server:
        result = assert_probe_matches(proj, "tiny")  # the base URL is the manifest's
        assert result.base_url == server.base_url
        assert_chats(server.base_url, "tiny")


def test_llama_server_loads_every_shard_of_a_split_model_from_the_emitted_first_shard(
    published: None, project: Path, llama_server: Path, flags: ServerFlags, tmp_path: Path
) -> None:
    proj = synced_project(project, "tiny-split")
    argv = json.loads(emitted(proj, "llama-server", "split.json", flags, as_json=True))["argv"]
    first = Path(argv[argv.index("-m") + 1])
    assert first.name == SPLIT_FILES[0]
    assert sorted(path.name for path in first.parent.iterdir()) == list(SPLIT_FILES)
    # The first shard alone holds a third of the tensors: a completion needs the other two loaded.
    assert read_gguf(first).tensor_count < sum(read_gguf(first.parent / n).tensor_count for n in SPLIT_FILES)

    with serving([str(llama_server), *argv[1:]], proj.port, tmp_path / "server.log") as server:
        assert_probe_matches(proj, "tiny-split")
        assert_chats(server.base_url, "tiny-split")


def test_router_mode_serves_each_model_of_the_emitted_preset_by_name(
    published: None, project: Path, llama_server: Path, flags: ServerFlags, tmp_path: Path
) -> None:
    proj = synced_project(project, "tiny", "tiny-split")
    preset = proj.folder / "router.ini"
    emitted(proj, "router-preset", preset.name, flags)
    argv = [
        str(llama_server),
        "--models-preset",
        str(preset),
        "--host",
        "127.0.0.1",
        "--port",
        str(proj.port),
    ]

    with serving(argv, proj.port, tmp_path / "router.log") as server:
        for name in ("tiny", "tiny-split"):
            assert_probe_matches(proj, name, server.base_url)
            assert_chats(server.base_url, name)
        every = api.probe(None, None, proj.manifest)  # no name: the router, asked once per model

    assert [(r.name, r.base_url, r.matches) for r in every.results] == [
        ("tiny", server.base_url, True),
        ("tiny-split", server.base_url, True),
    ]
    assert every.ok


def test_the_emitted_router_preset_loads_every_locked_model_from_the_store_offline(
    published: None,
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    llama_server: Path,
    flags: ServerFlags,
    tmp_path: Path,
) -> None:
    # The single-file repo ships a preset: its keys go into the emitted preset, below the manifest's,
    # and the draft repo it names is locked and served from the store too.
    repo_preset = (
        "[*]\ntop-k = 20\n\n[tiny/llama:f16]\nc = 512 ; the manifest says 256\nno-jinja = true\n"
        f"hf-repo-draft = {DRAFT_REPO}:F16\n"
    )
    (draft,) = write_tiny_llama(tmp_path / DRAFT_FILE, seed=3)
    mirror_root.commit(DRAFT_REPO, {DRAFT_FILE: draft})
    mirror_root.commit(SINGLE_REPO, {"preset.ini": repo_preset.encode()})
    port = free_port()
    runtime = {"port": port, "ctx_size": 256, "load_on_startup": True}
    manifest = write_manifest(
        project,
        {
            "tiny": {"repo": SINGLE_REPO, "quant": "F16", "runtime": runtime},
            "tiny-split": {"repo": SPLIT_REPO, "quant": "F16", "runtime": runtime},
        },
    )
    api.lock(manifest)
    api.sync(manifest)
    proj = Project(project, manifest, port)
    preset = emitted(proj, "router-preset", "router.ini", flags)
    assert "load-on-startup = true" in preset.split("[tiny]")[0]  # shared by both: in [*]
    views = {name: api.model_path(name, manifest) for name in ("tiny", "tiny-split", "tiny.draft")}
    assert "hf-repo-draft" not in preset
    # HF_ENDPOINT still names the mirror: a download, a listing or a HEAD would land in its log.
    # An empty llama.cpp cache, so that the router lists only the preset's models.
    env = {**os.environ, "LLAMA_CACHE": str(tmp_path / "llama-cache")}
    argv = [str(llama_server), "--models-preset", str(project / "router.ini"), "--offline"]
    mirror.clear_log()

    with serving(
        [*argv, "--host", "127.0.0.1", "--port", str(port)], port, tmp_path / "r.log", env=env
    ) as server:
        root = server.base_url.removesuffix("/v1")

        def listed() -> dict[str, dict[str, Any]]:
            return {m["id"]: m for m in httpx2.get(f"{root}/models", timeout=5).json()["data"]}

        # No request for a model: the router loads each on its own, at start.
        wait_for(
            lambda: {m["status"]["value"] for m in listed().values()} == {"loaded"},
            f"every model loaded:\n{server.log_tail()}",
            timeout=HEALTH_TIMEOUT,
        )
        models = listed()
        assert sorted(models) == ["tiny", "tiny-split"]
        for name, model in models.items():
            assert model["source"] == "preset"
            args = model["status"]["args"]
            assert args[args.index("--model") + 1] == str(views[name]), args
            assert "--offline" in args  # the router passes it on to each model's server
            assert args[args.index("--ctx-size") + 1] == "256"
        tiny = models["tiny"]["status"]["args"]
        assert tiny[tiny.index("--top-k") + 1] == "20"
        assert "--no-jinja" in tiny
        draft_option = flags.canonical(flags.draft.lstrip("-"))[0]  # the router writes the main spelling
        assert tiny[tiny.index(draft_option) + 1] == str(views["tiny.draft"]), tiny
        assert "--top-k" not in models["tiny-split"]["status"]["args"]
        for name in models:
            assert_probe_matches(proj, name, server.base_url)
            assert_chats(server.base_url, name)

    assert mirror.log == [], [(r.method, r.path) for r in mirror.log]


def test_llama_server_runs_from_the_emitted_environment_alone(
    published: None, project: Path, llama_server: Path, flags: ServerFlags, tmp_path: Path
) -> None:
    proj = synced_project(project, "tiny")
    text = emitted(proj, "llama-server-env", "tiny.env", flags)
    env = dict(line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))
    assert set(env) >= {"LLAMA_ARG_MODEL", "LLAMA_ARG_ALIAS", "LLAMA_ARG_PORT", "LLAMA_ARG_CTX_SIZE"}
    assert env["LLAMA_ARG_PORT"] == str(proj.port)
    assert all(key.startswith("LLAMA_ARG_") for key in env)

    # No argument, and no variable but the emitted ones.
    with serving([str(llama_server)], proj.port, tmp_path / "server.log", env=env) as server:
        assert_probe_matches(proj, "tiny")
        assert_chats(server.base_url, "tiny")


# -- llama-cpp-python ------------------------------------------------------------------------------


def test_llama_cpp_python_serves_the_emitted_config(published: None, project: Path, tmp_path: Path) -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.fail(
            f"llama-cpp-python is not installed in {sys.prefix}: "
            "pip install 'llama-cpp-python[server]==0.3.36' (a several-minute compile)",
            pytrace=False,
        )
    proj = synced_project(project, "tiny", "tiny-split")
    config = proj.folder / "llama-cpp-python.json"
    written = json.loads(emitted(proj, "llama-cpp-python", config.name, ServerFlags()))
    assert written["port"] == proj.port
    argv = [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config)]

    with serving(argv, proj.port, tmp_path / "server.log") as server:
        for name in ("tiny", "tiny-split"):
            [result] = api.probe(server.base_url, name, proj.manifest).results
            assert result.up, result.status
            assert name in result.served
            # Its server names no model file anywhere (no /props): the served file cannot be compared.
            assert result.matches is None
            assert result.ok
            assert_chats(server.base_url, name)


def test_llama_server_dash_hf_downloads_through_the_pull_through_mirror(
    published: None, mirror: MirrorServer, project: Path, llama_server: Path, tmp_path: Path
) -> None:
    """``llama-server -hf`` (it reads ``HF_ENDPOINT``) against ``mirror serve --store`` whose store
    holds the lock only: the mirror fetches the file from upstream (the fixture mirror) once,
    verifies and stores it; llama-server downloads it from the mirror, loads it and chats."""
    api.lock(write_manifest(project, {"tiny": {"repo": SINGLE_REPO, "quant": "F16"}}))
    [locked] = load_lock((project / "models.lock").read_text(), "models.lock").models["tiny"].files
    store = Store(tmp_path / "store").init()
    command = [
        str(CLI),
        "mirror",
        "serve",
        "--store",
        str(store.home),
        "--lock",
        str(project / "models.lock"),
    ]
    process, url = mirror_process(
        [*command, "--port", "0", "--cdn-port", "0", "--upstream", mirror.url, "-q"]
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    env |= {"HF_ENDPOINT": url, "LLAMA_CACHE": str(tmp_path / "llama-cache")}
    port = free_port()
    argv = [
        str(llama_server),
        "-hf",
        f"{SINGLE_REPO}:F16",
        "--alias",
        "tiny",
        "--port",
        str(port),
        "-c",
        "256",
    ]
    try:
        with serving(argv, port, tmp_path / "server.log", env=env) as server:
            assert_chats(server.base_url, "tiny")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 143
    assert store.has_blob(locked.sha256, locked.size)
    [downloaded] = [p for p in (tmp_path / "llama-cache").rglob(SINGLE_FILE) if p.is_file()]
    assert sha_file(downloaded) == locked.sha256
    assert len(cdn_gets(since_settled(mirror), SINGLE_FILE)) == 1  # upstream sent it once
