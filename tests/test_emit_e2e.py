"""``emit`` end to end: real tiny GGUFs on the mirror, locked and synced into the isolated store, then
rendered by ``api.emit`` / ``api.emit_targets`` / ``sync`` and by the installed ``alex-models``."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Required, TypedDict

import pytest
from helpers import Hub, cli, free_port, home, view
from ruamel.yaml import YAML

from alex_models import api
from alex_models.emit import PROVIDER
from alex_models.emit.flags import ServerFlags
from alex_models.errors import UserError
from alex_models.formats import Shell
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

FLAGS = ServerFlags()  # the built-in names, whatever llama-server this machine has
HERE = Shell.POWERSHELL if os.name == "nt" else Shell.SH  # the shell emit writes for by default

CHAT, SPLIT, DRAFT, PLAIN = "org/chat", "org/split", "org/draft", "org/plain"
CHAT_FILE, MMPROJ_FILE = "chat-Q4_K_M.gguf", "mmproj-chat-f16.gguf"
DRAFT_FILE, PLAIN_FILE = "draft-Q8_0.gguf", "plain-Q4_K_M.gguf"
SHARDS = [f"split-Q8_0-{n:05d}-of-00003.gguf" for n in (1, 2, 3)]
TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"

MODELS: dict[str, dict[str, object]] = {
    "chat": {
        "repo": CHAT,
        "quant": "Q4_K_M",
        "mmproj": MMPROJ_FILE,
        "draft": "draft",
        "runtime": {"ctx_size": 1024, "n_gpu_layers": 0},
    },
    "draft": {"repo": DRAFT, "quant": "Q8_0"},
    "split": {"repo": SPLIT, "quant": "Q8_0"},
}
NO_TEMPLATE = "split: the GGUF carries no chat template; set runtime.chat_template for chat use"
APP_CONFIG = """\
# the app's settings
name: demo  # shown in the title bar
runtime:
  llm_provider: openai
  api_key: sk-remote-secret  # never sent to a local server
  temperature: 0.2
# end of the app's settings
"""


class Target(TypedDict, total=False):
    """An ``emit:`` entry of the manifest."""

    format: Required[str]
    path: Required[str]
    model: str
    only: list[str]
    base_url: str
    shell: str


TARGETS: list[Target] = [
    {"format": "llama-swap", "path": "deploy/llama-swap.yaml"},
    {"format": "llama-server-env", "path": "deploy/chat.env", "model": "chat"},
    {"format": "router-preset", "path": "presets.ini", "only": ["chat", "split"]},
    {"format": "alex", "path": "app.yaml", "model": "chat", "base_url": "http://127.0.0.1:8099/v1"},
]


# -- fixtures and helpers ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of every repo, by repo path, written once a session."""
    made = tmp_path_factory.mktemp("emit-ggufs")

    def gguf(name: str, **kwargs: Any) -> bytes:  # Any: write_tiny_gguf's own keywords, passed on
        return write_tiny_gguf(made / name, **kwargs).read_bytes()

    return {
        f"{CHAT}/{CHAT_FILE}": gguf(CHAT_FILE, context_length=2048, chat_template=TEMPLATE),
        f"{CHAT}/{MMPROJ_FILE}": gguf(MMPROJ_FILE, architecture="clip"),
        f"{DRAFT}/{DRAFT_FILE}": gguf(DRAFT_FILE, context_length=2048, chat_template=TEMPLATE),
        **{
            f"{SPLIT}/{name}": gguf(name, context_length=4096, split=(n, 3))
            for n, name in enumerate(SHARDS, 1)
        },
        f"{PLAIN}/{PLAIN_FILE}": gguf(PLAIN_FILE, context_length=1000),
    }


@pytest.fixture
def hub(
    mirror_root: MirrorRoot, mirror: MirrorServer, ggufs: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> Hub:
    """A chat model with projector and chat template, a draft, a 3-way split model, and a plain one."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    commits = {}
    for repo in (CHAT, DRAFT, SPLIT, PLAIN):
        files = {
            key.removeprefix(repo + "/"): data for key, data in ggufs.items() if key.startswith(repo + "/")
        }
        commits[repo] = mirror_root.commit(repo, files)
    return Hub(mirror_root, mirror, ggufs, commits)


def write_project(
    directory: Path, models: Mapping[str, object], emit: Sequence[Target] | None = None
) -> Path:
    """``directory/models.yaml`` with these models and emit targets (JSON is YAML)."""
    directory.mkdir(parents=True, exist_ok=True)
    document: dict[str, object] = {"version": 1, "models": dict(models)}
    if emit is not None:
        document["emit"] = emit
    path = directory / "models.yaml"
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def synced(hub: Hub, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The models synced (their emit: targets written); the working folder is not the project's."""
    manifest = write_project(project, MODELS, TARGETS)
    monkeypatch.chdir(tmp_path)
    api.sync(manifest)
    return manifest


def store_paths(text: str) -> set[Path]:
    """Every path into the store that ``text`` mentions."""
    if os.sep == "\\":  # JSON writes a Windows path's backslashes twice
        text = text.replace("\\\\", "\\")
    return {Path(found) for found in re.findall(re.escape(str(home())) + r"[^\s\"',]+", text)}


def targets(manifest: Path) -> dict[str, Path]:
    """The emit: list's files, by format, where ``sync`` writes them."""
    return {str(t["format"]): manifest.parent / str(t["path"]) for t in TARGETS}


def mtimes(paths: list[Path]) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in paths}


def model_names(format_name: str, text: str) -> list[str]:
    """The models a multi-model file describes, in its order."""
    if format_name == "router-preset":
        return [name for name in re.findall(r"^\[(.+)\]$", text, re.MULTILINE) if name != "*"]
    if format_name == "llama-swap":
        return list(YAML(typ="safe").load(text)["models"])
    return [model["model_alias"] for model in json.loads(text)["models"]]


def sync_project(
    project: Path, models: Mapping[str, object], emit: Sequence[Target] | None = None
) -> api.SyncResult:
    return api.sync(write_project(project, models, emit))


# -- paths -------------------------------------------------------------------------------------------


def test_every_format_names_exactly_the_expected_absolute_view_paths_and_they_exist(
    hub: Hub, synced: Path
) -> None:
    chat = {view(hub, CHAT, CHAT_FILE), view(hub, CHAT, MMPROJ_FILE), view(hub, DRAFT, DRAFT_FILE)}
    every = chat | {view(hub, SPLIT, SHARDS[0])}
    expected: dict[str, tuple[list[str], set[Path]]] = {
        "llama-server": (["chat"], chat),
        "llama-server-env": (["chat"], chat),
        "router-preset": ([], every),
        "llama-swap": ([], every),
        "llama-cpp-python": ([], every),
        "alex": (["chat"], set()),  # the app talks to the server, never to a file
    }

    named = {
        name: store_paths(api.emit(name, synced, only=only, flags=FLAGS).text)
        for name, (only, _) in expected.items()
    }

    assert named == {name: paths for name, (_, paths) in expected.items()}
    assert all(path.is_absolute() and path.is_file() for path in every)


def test_a_split_model_is_always_passed_as_its_first_shard_with_the_other_shards_beside_it(
    hub: Hub, synced: Path, ggufs: dict[str, bytes]
) -> None:
    first = view(hub, SPLIT, SHARDS[0])
    selections = {
        "llama-server": ["split"],
        "llama-server-env": ["split"],
        "router-preset": [],
        "llama-swap": [],
        "llama-cpp-python": [],
    }

    for name, only in selections.items():
        named = store_paths(api.emit(name, synced, only=only, flags=FLAGS).text)
        assert first in named, name
        assert not named & {view(hub, SPLIT, shard) for shard in SHARDS[1:]}, name
    for shard in SHARDS:
        assert (first.parent / shard).read_bytes() == ggufs[f"{SPLIT}/{shard}"]


# -- selecting models --------------------------------------------------------------------------------


def test_only_picks_the_models_of_the_multi_model_formats_in_manifest_order(hub: Hub, synced: Path) -> None:
    for name in ("router-preset", "llama-swap", "llama-cpp-python"):
        everything = api.emit(name, synced, flags=FLAGS).text
        picked = api.emit(name, synced, only=["split", "draft"], flags=FLAGS).text

        assert model_names(name, everything) == ["chat", "draft", "split"]
        assert model_names(name, picked) == ["draft", "split"]
        assert store_paths(picked) == {view(hub, DRAFT, DRAFT_FILE), view(hub, SPLIT, SHARDS[0])}


def test_a_one_model_format_with_several_models_is_a_user_error_naming_them(synced: Path) -> None:
    for name in ("llama-server", "llama-server-env"):
        with pytest.raises(UserError) as every:
            api.emit(name, synced, flags=FLAGS)
        with pytest.raises(UserError) as two:
            api.emit(name, synced, only=["split", "chat"], flags=FLAGS)

        assert every.value.message == f"{name} describes one model, and 3 are selected (chat, draft, split)"
        assert two.value.message == f"{name} describes one model, and 2 are selected (chat, split)"
        assert every.value.exit_code == 1


def test_an_unknown_model_name_is_a_user_error_listing_the_models(synced: Path) -> None:
    out = synced.parent / "never.txt"
    for name in ("llama-server", "llama-swap", "alex"):
        with pytest.raises(UserError) as caught:
            api.emit(name, synced, only=["nope"], out=out, flags=FLAGS)

        assert caught.value.message == "no locked model named 'nope'"
        assert "chat, draft, split" in str(caught.value.hint)
    assert not out.exists()


def test_out_writes_the_file_and_reports_whether_it_changed(synced: Path, tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "swap.yaml"

    first = api.emit("llama-swap", synced, out=out, flags=FLAGS)
    written = out.stat().st_mtime_ns
    again = api.emit("llama-swap", synced, out=out, flags=FLAGS)
    unchanged = out.stat().st_mtime_ns
    out.write_text("models: {}\n", encoding="utf-8")
    repaired = api.emit("llama-swap", synced, out=out, flags=FLAGS)

    assert (first.path, first.changed) == (out, True)
    assert (again.path, again.changed) == (out, False)
    assert unchanged == written
    assert repaired.changed is True
    assert out.read_text(encoding="utf-8") == first.text == again.text == repaired.text


# -- the emit: list ----------------------------------------------------------------------------------


def test_sync_writes_every_target_relative_to_the_manifest_folder_not_the_working_one(
    synced: Path, tmp_path: Path
) -> None:
    assert Path.cwd() == tmp_path != synced.parent
    for path in targets(synced).values():
        assert path.is_file()
        assert not (tmp_path / path.relative_to(synced.parent)).exists()


def test_each_emitted_file_is_what_emit_gives_for_its_target(synced: Path) -> None:
    for target in TARGETS:
        only = [target["model"]] if "model" in target else target.get("only", [])
        given = api.emit(
            str(target["format"]),
            synced,
            only=only,
            base_url=target.get("base_url"),
        )
        path = synced.parent / str(target["path"])
        assert path.read_text(encoding="utf-8") == given.text, path


def test_model_only_and_base_url_of_targets_are_honoured(hub: Hub, synced: Path) -> None:
    files = targets(synced)
    env = files["llama-server-env"].read_text(encoding="utf-8")
    preset = files["router-preset"].read_text(encoding="utf-8")
    swap = files["llama-swap"].read_text(encoding="utf-8")
    app = YAML(typ="safe").load(files["alex"].read_text(encoding="utf-8"))

    assert f"LLAMA_ARG_MODEL={view(hub, CHAT, CHAT_FILE)}" in env.splitlines()
    assert "LLAMA_ARG_ALIAS=chat" in env.splitlines()
    assert model_names("router-preset", preset) == ["chat", "split"]
    assert model_names("llama-swap", swap) == ["chat", "draft", "split"]
    assert app["runtime"] == {
        "llm_provider": PROVIDER,
        "base_url": "http://127.0.0.1:8099/v1",
        "llm_model": "chat",
    }


def test_a_second_sync_changes_no_emitted_file(synced: Path) -> None:
    files = list(targets(synced).values())
    before = mtimes(files)
    texts = [path.read_bytes() for path in files]

    result = api.sync(synced)

    assert result.emitted == ()
    assert mtimes(files) == before
    assert [path.read_bytes() for path in files] == texts


def test_check_reports_a_hand_edited_and_a_missing_file_and_writes_nothing(synced: Path) -> None:
    files = targets(synced)
    files["llama-swap"].write_text("models: {}\n", encoding="utf-8")
    files["router-preset"].unlink()
    before = mtimes([files["llama-swap"], files["llama-server-env"], files["alex"]])

    results = api.emit_targets(synced, check=True)

    assert {result.path: result.changed for result in results} == {
        files["llama-swap"]: True,
        files["llama-server-env"]: False,
        files["router-preset"]: True,
        files["alex"]: False,
    }
    assert files["llama-swap"].read_text(encoding="utf-8") == "models: {}\n"
    assert not files["router-preset"].exists()
    assert mtimes([files["llama-swap"], files["llama-server-env"], files["alex"]]) == before


def test_without_an_emit_list_sync_writes_nothing_beside_the_manifest(
    hub: Hub, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = sync_project(project, MODELS)

    assert result.emitted == ()
    assert result.warnings == ()
    assert sorted(path.name for path in project.iterdir()) == ["models.lock", "models.yaml"]
    assert api.emit_targets(project / "models.yaml") == []


def test_the_alex_target_merges_into_the_existing_app_config(
    hub: Hub, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (project / "app.yaml").write_text(APP_CONFIG, encoding="utf-8")

    result = sync_project(project, MODELS, TARGETS)

    text = (project / "app.yaml").read_text(encoding="utf-8")
    assert project / "app.yaml" in result.emitted
    for kept in ("# the app's settings", "name: demo  # shown in the title bar", "temperature: 0.2"):
        assert kept in text
    assert text.rstrip().endswith("# end of the app's settings")
    assert "api_key" not in text
    assert "sk-remote-secret" not in text
    assert YAML(typ="safe").load(text) == {
        "name": "demo",
        "runtime": {
            "llm_provider": PROVIDER,
            "temperature": 0.2,
            "base_url": "http://127.0.0.1:8099/v1",
            "llm_model": "chat",
        },
    }


# -- sync --locked ---------------------------------------------------------------------------------------


def test_locked_sync_with_a_hand_edited_file_is_a_user_error_naming_only_it_and_leaves_it(
    synced: Path,
) -> None:
    files = targets(synced)
    files["router-preset"].write_text("; mine\n", encoding="utf-8")
    others = [path for name, path in files.items() if name != "router-preset"]
    before = mtimes(others)

    with pytest.raises(UserError) as caught:
        api.sync(synced, api.SyncOptions(locked=True))

    assert caught.value.exit_code == 1
    assert str(files["router-preset"]) in caught.value.message
    assert not any(str(path) in caught.value.message for path in others)
    assert files["router-preset"].read_text(encoding="utf-8") == "; mine\n"
    assert mtimes(others) == before


def test_locked_sync_writes_a_missing_target(synced: Path) -> None:
    app = targets(synced)["alex"]
    app.unlink()

    result = api.sync(synced, api.SyncOptions(locked=True))

    assert result.emitted == (app,)
    expected = api.emit("alex", synced, only=["chat"], base_url="http://127.0.0.1:8099/v1")
    assert app.read_text(encoding="utf-8") == expected.text


# -- warnings ------------------------------------------------------------------------------------------


def test_a_ctx_size_above_the_trained_context_warns(hub: Hub, project: Path) -> None:
    chat = {**MODELS["chat"], "runtime": {"ctx_size": 4096}}
    manifest = write_project(project, {"chat": chat, "draft": MODELS["draft"]})
    api.sync(manifest)

    result = api.emit("llama-server", manifest, only=["chat"], flags=FLAGS)

    assert result.warnings == ("chat: ctx_size 4096 is above the 2048 tokens it was trained with",)


def test_a_gguf_without_a_chat_template_warns(hub: Hub, project: Path) -> None:
    manifest = write_project(project, {"plain": {"repo": PLAIN, "quant": "Q4_K_M"}})
    api.sync(manifest)

    result = api.emit("llama-server", manifest, flags=FLAGS)

    assert result.warnings == (
        "plain: the GGUF carries no chat template; set runtime.chat_template for chat use",
    )


def test_runtime_chat_template_silences_the_template_warning(hub: Hub, project: Path) -> None:
    plain = {"repo": PLAIN, "quant": "Q4_K_M", "runtime": {"chat_template": "chatml"}}
    manifest = write_project(project, {"plain": plain})
    api.sync(manifest)

    result = api.emit("llama-server", manifest, flags=FLAGS)

    assert result.warnings == ()
    assert "--chat-template chatml" in result.text


def test_a_correct_model_gives_no_warnings(synced: Path) -> None:
    for format_name in ("llama-server", "llama-server-env", "llama-swap", "alex"):
        assert api.emit(format_name, synced, only=["chat"], flags=FLAGS).warnings == ()


def test_a_locked_model_not_synced_yet_is_an_error_unless_allow_missing_then_a_warning(
    hub: Hub, project: Path
) -> None:
    manifest = write_project(project, MODELS)
    api.lock(manifest)

    with pytest.raises(
        UserError, match=r"^model 'chat' is not synced into .*: its files are not in place \(hint"
    ):
        api.emit("llama-swap", manifest, only=["chat", "draft"], flags=FLAGS)
    result = api.emit("llama-swap", manifest, only=["chat", "draft"], flags=FLAGS, allow_missing=True)

    assert result.warnings == (
        f"chat: {view(hub, CHAT, CHAT_FILE)} is not synced yet; run 'alex-models sync'",
        f"draft: {view(hub, DRAFT, DRAFT_FILE)} is not synced yet; run 'alex-models sync'",
    )


def test_sync_result_carries_the_warnings_and_the_files_it_rewrote(
    hub: Hub, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = sync_project(project, MODELS, TARGETS)
    files = targets(project / "models.yaml")
    files["llama-server-env"].write_text("LLAMA_ARG_MODEL=/elsewhere.gguf\n", encoding="utf-8")

    second = api.sync(project / "models.yaml")

    assert first.emitted == tuple(files.values())
    assert second.emitted == (files["llama-server-env"],)
    assert first.warnings == second.warnings == (NO_TEMPLATE,)  # once, though two targets hold split


# -- the CLI -----------------------------------------------------------------------------------------


def test_cli_emit_llama_server_prints_one_shell_line(hub: Hub, synced: Path) -> None:
    result = cli(synced.parent, "emit", "llama-server", "--only", "chat")

    assert result.returncode == 0, result.stderr
    assert result.stdout == api.emit("llama-server", synced, only=["chat"]).text
    assert len(result.stdout.splitlines()) == 1
    argv = shlex.split(result.stdout)  # PowerShell's line too: its paths are in single quotes
    if HERE is Shell.POWERSHELL:
        assert argv.pop(0) == "&"  # the call operator
    assert argv[:3] == ["llama-server", "-m", str(view(hub, CHAT, CHAT_FILE))]
    assert "warning" not in result.stderr


def test_cli_emit_shell_writes_the_line_for_that_shell_and_cmd_refuses_a_percent(
    hub: Hub, synced: Path
) -> None:
    model = f"'{view(hub, CHAT, CHAT_FILE)}'"  # PowerShell quotes a path, where sh need not

    powershell = cli(synced.parent, "emit", "llama-server", "--only", "chat", "--shell", "powershell")
    write_project(synced.parent, {**MODELS, "chat": {**MODELS["chat"], "runtime": {"args": ["-p", "99%"]}}})
    cmd = cli(synced.parent, "emit", "llama-server", "--only", "chat", "--shell", "cmd")
    without_format = cli(synced.parent, "emit", "--shell", "sh")

    assert powershell.returncode == 0, powershell.stderr
    assert powershell.stdout.startswith(
        f"& llama-server -m {model} --alias chat --host '127.0.0.1' --port 8080 "
    )
    assert cmd.returncode == 1
    assert cmd.stdout == ""
    assert cmd.stderr.splitlines() == [
        "error: cannot write -p '99%' for cmd.exe: it has a '%', which cmd.exe expands even inside quotes",
        "hint: emit it with --shell powershell",
    ]
    assert without_format.returncode == 2
    assert "--shell goes with a FORMAT" in without_format.stderr


def test_emit_files_are_for_the_shell_named_else_the_one_their_extension_names_else_this_systems(
    synced: Path,
) -> None:
    scripts: list[Target] = [
        {"format": "llama-server", "path": "run.ps1", "model": "chat"},
        {"format": "llama-server", "path": "run.BAT", "model": "chat"},
        {"format": "llama-server", "path": "run.ps1.txt", "model": "chat", "shell": "powershell"},
        {"format": "llama-server", "path": "run.cmd.txt", "model": "chat"},
    ]
    write_project(synced.parent, MODELS, scripts)

    api.emit_targets(synced, flags=FLAGS)

    def line(shell: Shell) -> str:
        return api.emit("llama-server", synced, only=["chat"], flags=FLAGS, shell=shell).text

    written = {t["path"]: (synced.parent / t["path"]).read_text(encoding="utf-8") for t in scripts}
    assert written == {
        "run.ps1": line(Shell.POWERSHELL),
        "run.BAT": line(Shell.CMD),
        "run.ps1.txt": line(Shell.POWERSHELL),
        "run.cmd.txt": line(HERE),  # this system's: sh, PowerShell on Windows
    }
    assert line(HERE) == api.emit("llama-server", synced, only=["chat"], flags=FLAGS).text


def test_cli_emit_check_exits_1_saying_which_file_differs(synced: Path, tmp_path: Path) -> None:
    files = targets(synced)
    files["llama-server-env"].write_text("LLAMA_ARG_MODEL=/elsewhere.gguf\n", encoding="utf-8")

    result = cli(tmp_path, "emit", "--check", "--manifest", str(synced))

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert f"differs: {files['llama-server-env']}" in lines
    assert sorted(line for line in lines if line.startswith("differs: ")) == [
        f"differs: {files['llama-server-env']}"
    ]
    assert f"up to date: {files['llama-swap']}" in lines
    assert files["llama-server-env"].read_text(encoding="utf-8") == "LLAMA_ARG_MODEL=/elsewhere.gguf\n"
    assert "Traceback" not in result.stderr


def test_cli_emit_alex_into_merges_keeping_comments_and_dropping_the_api_key(synced: Path) -> None:
    config = synced.parent / "config" / "alex.yaml"
    config.parent.mkdir()
    config.write_text(APP_CONFIG, encoding="utf-8")

    result = cli(
        synced.parent,
        "emit",
        "alex",
        "--into",
        "config/alex.yaml",
        "--only",
        "chat",
        "--base-url",
        "http://127.0.0.1:1234/v1",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"wrote: {Path('config', 'alex.yaml')}\n"  # with a backslash on Windows
    text = config.read_text(encoding="utf-8")
    assert "# the app's settings" in text
    assert "name: demo  # shown in the title bar" in text
    assert "# end of the app's settings" in text
    assert "api_key" not in text
    assert "sk-remote-secret" not in text
    assert YAML(typ="safe").load(text)["runtime"] == {
        "llm_provider": PROVIDER,
        "temperature": 0.2,
        "base_url": "http://127.0.0.1:1234/v1",
        "llm_model": "chat",
    }


def test_cli_sync_prints_wrote_for_emitted_targets_and_warning_lines(hub: Hub, project: Path) -> None:
    write_project(project, MODELS, TARGETS)

    first = cli(project, "sync")
    second = cli(project, "sync")

    assert first.returncode == 0, first.stderr
    wrote = [line for line in first.stdout.splitlines() if line.startswith("wrote: ")]
    assert wrote == [f"wrote: {Path(target['path'])}" for target in TARGETS]  # in this system's separators
    assert f"warning: {NO_TEMPLATE}" in first.stderr.splitlines()
    assert second.returncode == 0, second.stderr
    assert "wrote: " not in second.stdout
    assert f"warning: {NO_TEMPLATE}" in second.stderr.splitlines()


def test_cli_probe_of_a_closed_port_exits_1_saying_down(tmp_path: Path) -> None:
    empty = tmp_path / "nowhere"
    empty.mkdir()
    url = f"http://127.0.0.1:{free_port()}/v1"

    result = cli(empty, "probe", "--base-url", url)

    assert result.returncode == 1
    assert result.stdout.startswith(f"{url}: down (")
    assert "Traceback" not in result.stderr
