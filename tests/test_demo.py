"""``alex-models demo``: lock -> sync -> emit (-> llama-server) against its own mirror, leaving nothing.

Without a llama-server (PATH stripped of it) the chat step is skipped; the ``runtime`` tests run
the real one that ``ALEX_MODELS_LLAMA_SERVER`` names (else the one on PATH) and fail without one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx2
import pytest
from helpers import CLI, cli, wait_for

from alex_models.api import read_lock
from alex_models.api._demo import (
    LLAMA_SERVER_VARIABLE,
    ChatStep,
    DemoStep,
    EmitStep,
    LockStep,
    MirrorStep,
    SyncStep,
    demo,
    find_llama_server,
)
from alex_models.errors import RemoteError, UsageError
from alex_models.lock import LockedFile
from alex_models.provider import LlamaCppClient

# An absolute path's folders as this system prints them, and the emit line in this system's shell
# (as `emit` prints it: PowerShell quotes the path and the host).
if os.name == "nt":
    FOLDERS = r"[A-Za-z]:\\\S+\\"
    EMIT = (
        rf"emit: & llama-server -m '{FOLDERS}tiny-llama-F16\.gguf' --alias tiny-llama --host '127\.0\.0\.1' "
        r"--port (?P<server>\d+) -c 256"
    )
else:
    FOLDERS = r"/\S+/"
    EMIT = (
        rf"emit: llama-server -m {FOLDERS}tiny-llama-F16\.gguf --alias tiny-llama --host 127\.0\.0\.1 "
        r"--port (?P<server>\d+) -c 256"
    )
STEP_LINES = [
    r"mirror: serving alex-demo/tiny-llama-GGUF \(tiny-llama-F16\.gguf, 251 KB\) at http://127\.0\.0\.1:(?P<mirror>\d+)",
    rf"lock: pinned alex-demo/tiny-llama-GGUF@[0-9a-f]{{12}}, 1 file, 251 KB, in {FOLDERS}models\.lock",
    rf"sync: downloaded 1 file \(251 KB\) in \d+\.\ds into {FOLDERS}store",
    rf"      verified by SHA256; llama\.cpp reads {FOLDERS}tiny-llama-F16\.gguf",
    EMIT,
]


def without_llama_server() -> str:
    """PATH minus every folder that holds a llama-server (``llama-server.exe`` on Windows)."""
    folders = os.environ["PATH"].split(os.pathsep)
    return os.pathsep.join(folder for folder in folders if shutil.which("llama-server", path=folder) is None)


def demo_env(scratch: Path, **changes: str) -> dict[str, str]:
    """This test's environment, temporary files under ``scratch``, no llama-server, plus ``changes``."""
    env = {name: value for name, value in os.environ.items() if name != LLAMA_SERVER_VARIABLE}
    return {**env, "TMPDIR": str(scratch), "PATH": without_llama_server(), **changes}


def run_demo(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), "demo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def matched_steps(stdout: str) -> dict[str, int]:
    """Each step line matched in order; the ports they name."""
    lines = stdout.splitlines()
    ports: dict[str, int] = {}
    for line, pattern in zip(lines, STEP_LINES, strict=False):
        found = re.fullmatch(pattern, line)
        assert found, (pattern, stdout)
        ports |= {name: int(value) for name, value in found.groupdict().items()}
    return ports


def assert_closed(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, f"something still listens on {port}"


def processes_with(argument: str) -> list[str]:
    """Command lines of running processes that have ``argument`` among their arguments."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:  # it ended while we looked
            continue
        if argument.encode() in args:
            found.append(" ".join(a.decode(errors="replace") for a in args))
    return found


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder that receives every temporary file of this test, this process's too."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def no_llama_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", without_llama_server())
    monkeypatch.delenv(LLAMA_SERVER_VARIABLE, raising=False)


# -- the command -----------------------------------------------------------------------------------


def test_demo_shows_each_step_skips_the_chat_without_llama_server_and_leaves_nothing(
    tmp_path: Path, scratch: Path, isolated_home: Path
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    home = Path(os.environ["ALEX_MODELS_HOME"])

    result = run_demo(cwd, demo_env(scratch))

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    ports = matched_steps(result.stdout)
    assert result.stdout.splitlines()[len(STEP_LINES) :] == [
        "chat: llama-server not on PATH: skipped the chat step; install llama.cpp to see it answer",
        "done: the servers are stopped and the demo's files removed; 'alex-models init' starts a project",
    ]
    assert list(scratch.iterdir()) == []  # its temporary directory is gone
    assert list(cwd.iterdir()) == []
    assert list(home.iterdir()) == []  # the user's store was never touched
    assert_closed(ports["mirror"])


def test_demo_needs_no_configuration_and_keeps_the_users_token_from_its_mirror(
    tmp_path: Path, scratch: Path
) -> None:
    # A saved token (or HF_TOKEN) and an unreachable HF_ENDPOINT change nothing: the demo's mirror
    # is its own, and it answers a token it does not know with 401.
    env = demo_env(scratch, HF_TOKEN="hf_not_for_the_demo", HF_ENDPOINT="http://127.0.0.1:9")

    result = run_demo(tmp_path, env)

    assert result.returncode == 0, result.stderr
    matched_steps(result.stdout)


def test_demo_refuses_offline_mode_saying_how_to_run_it(tmp_path: Path, scratch: Path) -> None:
    result = run_demo(tmp_path, demo_env(scratch, HF_HUB_OFFLINE="1"))

    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE), and it refuses even the "
        "demo's mirror on this machine",
        "hint: run it as 'HF_HUB_OFFLINE= TRANSFORMERS_OFFLINE= alex-models demo'",
    ]
    assert list(scratch.iterdir()) == []


# -- the API ---------------------------------------------------------------------------------------


def test_demo_steps_are_what_the_mirror_serves_and_the_store_holds(
    scratch: Path, no_llama_server: None
) -> None:
    seen: list[DemoStep] = []
    served: dict[str, str] = {}
    files: list[LockedFile] = []
    models: list[Path] = []

    def check(step: DemoStep) -> None:
        # Checked as each step happens: afterwards, every file and server is gone.
        seen.append(step)
        if isinstance(step, MirrorStep):
            info = httpx2.get(f"{step.endpoint}/api/models/{step.repo}/revision/main").json()
            served["commit"] = info["sha"]
            served["endpoint"] = step.endpoint
        elif isinstance(step, LockStep):
            locked = read_lock(step.lock_path)
            assert locked is not None
            assert locked.models["tiny-llama"].commit == step.commit == served["commit"]
            assert locked.models["tiny-llama"].files == list(step.files)
            files.extend(step.files)
        elif isinstance(step, SyncStep):
            (file,) = files
            assert hashlib.sha256(step.model.read_bytes()).hexdigest() == file.sha256
            assert step.model.stat().st_size == file.size == step.bytes_received
            assert step.model.is_relative_to(step.store)
            assert step.store.is_relative_to(scratch)
            models.append(step.model)
        elif isinstance(step, EmitStep):
            assert step.argv[step.argv.index("-m") + 1] == str(models[0])

    result = demo(on_step=check)

    assert [type(step) for step in seen] == [MirrorStep, LockStep, SyncStep, EmitStep, ChatStep]
    assert result.steps == tuple(seen)
    assert seen[-1] == ChatStep(None, None, "Say hello.", None, 0.0)
    assert not result.kept
    assert not result.workspace.exists()
    assert list(scratch.iterdir()) == []
    assert "HF_ENDPOINT" not in os.environ  # the endpoint is passed, never set in the environment
    assert_closed(int(served["endpoint"].rsplit(":", 1)[1]))


def test_demo_cleans_up_when_interrupted_midway(scratch: Path, no_llama_server: None) -> None:
    endpoints: list[str] = []

    def interrupt(step: DemoStep) -> None:
        if isinstance(step, MirrorStep):
            endpoints.append(step.endpoint)
        if isinstance(step, SyncStep):
            raise KeyboardInterrupt  # what Ctrl-C raises, with the mirror up and the store full

    with pytest.raises(KeyboardInterrupt):
        demo(on_step=interrupt)

    assert list(scratch.iterdir()) == []
    assert "HF_ENDPOINT" not in os.environ
    assert_closed(int(endpoints[0].rsplit(":", 1)[1]))


@pytest.mark.posix("SIGTERM delivered to a child, and a script run by its #! line")
@pytest.mark.linux("/proc, to find the demo's llama-server")
def test_sigterm_stops_the_demo_and_its_servers_and_removes_its_files(tmp_path: Path, scratch: Path) -> None:
    # A llama-server that starts and never answers: the demo waits for it when the signal comes.
    never_healthy = tmp_path / "never-healthy-server"
    never_healthy.write_text(
        f"#!{sys.executable}\nimport sys, time\nif '--help' not in sys.argv:\n    time.sleep(300)\n",
        encoding="utf-8",
    )
    never_healthy.chmod(0o755)
    env = demo_env(scratch, **{LLAMA_SERVER_VARIABLE: str(never_healthy)})
    stdout, stderr = tmp_path / "demo.o", tmp_path / "demo.e"
    with stdout.open("w") as out, stderr.open("w") as err:
        process = subprocess.Popen(
            [str(CLI), "demo"], cwd=tmp_path, env=env, stdout=out, stderr=err, text=True
        )
    try:
        wait_for(lambda: processes_with(str(never_healthy)) != [], "the demo to start its llama-server")
        process.terminate()
        code = process.wait(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert code == 143, stderr.read_text(encoding="utf-8")
    assert stderr.read_text(encoding="utf-8").splitlines() == [
        "interrupted; the servers are stopped and the demo's files are removed"
    ]
    assert_closed(matched_steps(stdout.read_text(encoding="utf-8"))["mirror"])
    assert processes_with(str(never_healthy)) == []
    assert list(scratch.iterdir()) == []


def test_demo_keeps_the_project_and_its_store_in_an_empty_directory(
    tmp_path: Path, scratch: Path, no_llama_server: None
) -> None:
    kept = tmp_path / "kept"

    result = demo(keep=kept)

    assert result.kept
    assert result.workspace == kept
    assert sorted(path.name for path in kept.iterdir()) == ["models.lock", "models.yaml", "store"]
    locked = read_lock(kept / "models.lock")
    assert locked is not None
    (file,) = locked.models["tiny-llama"].files
    synced = result.steps[2]
    assert isinstance(synced, SyncStep)
    assert hashlib.sha256(synced.model.read_bytes()).hexdigest() == file.sha256
    assert list(scratch.iterdir()) == []  # the mirror's files go all the same

    with pytest.raises(UsageError, match="is not an empty directory"):
        demo(keep=kept)


def test_the_kept_project_uses_its_own_store_without_alex_models_home(
    tmp_path: Path, scratch: Path, no_llama_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = tmp_path / "kept"
    result = demo(keep=kept)
    synced = result.steps[2]
    assert isinstance(synced, SyncStep)
    monkeypatch.delenv("ALEX_MODELS_HOME")

    status = cli(kept, "status")
    path = cli(kept, "path", "tiny-llama")

    assert (status.returncode, status.stderr) == (0, ""), status.stderr
    assert status.stdout.splitlines()[0] == f"store: {kept / 'store'}"
    assert status.stdout.splitlines()[1].split()[:2] == ["tiny-llama", "synced"]
    assert (path.returncode, path.stdout) == (0, f"{synced.model}\n"), path.stderr
    assert synced.model.is_relative_to(kept / "store")


# -- with a real llama-server ----------------------------------------------------------------------


@pytest.fixture
def llama_server() -> Path:
    """The llama-server the demo will find; the test fails, naming what to do, when there is none."""
    found = find_llama_server()
    if found is None:
        pytest.fail(
            f"no llama-server: set {LLAMA_SERVER_VARIABLE} to the path 'bash .ci/llama-server.sh' "
            "prints (it builds and caches one), or put llama-server on PATH",
            pytrace=False,
        )
    return found


@pytest.mark.runtime
def test_demo_chats_with_llama_server_then_stops_it(
    tmp_path: Path, scratch: Path, llama_server: Path
) -> None:
    env = demo_env(scratch, **{LLAMA_SERVER_VARIABLE: str(llama_server)})

    result = run_demo(tmp_path, env)

    assert result.returncode == 0, result.stderr
    ports = matched_steps(result.stdout)
    chat = result.stdout.splitlines()[len(STEP_LINES)]
    assert re.fullmatch(
        rf'chat: {re.escape(str(llama_server))} answered \'Say hello\.\' with ".+" \(random weights: noise\)',
        chat,
    ), chat
    assert_closed(ports["server"])
    assert processes_with(str(ports["server"])) == []  # no llama-server left with the demo's --port
    assert list(scratch.iterdir()) == []


@pytest.mark.runtime
def test_demo_stops_llama_server_when_interrupted_while_it_runs(scratch: Path, llama_server: Path) -> None:
    chats: list[ChatStep] = []

    def interrupt(step: DemoStep) -> None:
        if isinstance(step, ChatStep):
            chats.append(step)
            assert step.base_url is not None
            with LlamaCppClient(step.base_url, timeout=10) as client:
                assert client.health().ok  # still serving when the step is shown
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        demo(llama_server=llama_server, on_step=interrupt)

    (chat,) = chats
    assert chat.reply
    assert chat.base_url is not None
    assert_closed(int(chat.base_url.rsplit(":", 1)[1].removesuffix("/v1")))
    assert list(scratch.iterdir()) == []


# -- how the steps read ---------------------------------------------------------------------------


def test_step_sizes_are_said_in_human_units(capsys: pytest.CaptureFixture[str]) -> None:
    from alex_models.cli.demo import _show

    model = LockedFile(path="m.gguf", role="model", size=1_234_567, sha256="a" * 64)
    lock_path, store = Path("/p/models.lock"), Path("/s")  # shown as this system writes paths
    _show(MirrorStep(endpoint="http://127.0.0.1:1", repo="o/r", file="m.gguf", size=812))
    _show(LockStep(lock_path=lock_path, repo="o/r", commit="c" * 40, files=(model,)))
    _show(SyncStep(store=store, downloaded=(), bytes_received=0, seconds=0.0, model=store / "m"))

    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "mirror: serving o/r (m.gguf, 812 B) at http://127.0.0.1:1"
    assert lines[1] == f"lock: pinned o/r@{'c' * 12}, 1 file, 1.23 MB, in {lock_path}"
    assert lines[2] == f"sync: downloaded 0 files (0 B) in 0.0s into {store}"


# -- waiting for a server -------------------------------------------------------------------------


def test_waiting_for_a_server_that_exited_says_so_with_its_exit_code() -> None:
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    with LlamaCppClient("http://127.0.0.1:9/v1") as client, pytest.raises(RemoteError) as caught:
        client.wait_healthy(60, process)

    assert caught.value.message == "llama-server exited with code 3 before it was ready"


def test_waiting_for_a_server_that_never_answers_names_the_last_answer() -> None:
    with LlamaCppClient("http://127.0.0.1:9/v1") as client, pytest.raises(RemoteError) as caught:
        client.wait_healthy(0)

    assert caught.value.message.startswith(
        "llama-server was not ready after 0 s (no llama.cpp server answers"
    )
