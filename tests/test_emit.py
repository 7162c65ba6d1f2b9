"""The emit renderers, pure: hand-built ``ServerSpec`` objects in, exact text out. No network, no store."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, cast

import pytest
from ruamel.yaml import YAML

from alex_models import emit
from alex_models.emit import PROVIDER_ALIASES, ServerSpec, single
from alex_models.emit import llama_cpp as render
from alex_models.emit.app_config import alex_config
from alex_models.emit.flags import KNOWN_ENV, ServerFlags, parse_help
from alex_models.errors import UserError
from alex_models.formats import Shell
from alex_models.manifest import Runtime

BUILT_IN = ServerFlags()
HEADER = emit.HEADER


def posix_path(text: str) -> Path:
    """An example path, written as on Linux and macOS and kept so on Windows: the renderers only
    str() a path, and there a Path would turn each '/' into '\\' (test_shells.py renders Windows paths)."""
    return cast(Path, PurePosixPath(text)) if os.name == "nt" else Path(text)


QWEN_FILE = posix_path("/models/qwen/qwen-Q4_K_M.gguf")
MMPROJ = posix_path("/models/qwen/mmproj-f16.gguf")
TINY_FILE = posix_path("/models/tiny/tiny-Q8_0.gguf")


def qwen(**changes: object) -> ServerSpec:
    """One model with every setting: context, layers, projector, draft, template, args, aliases, ttl, env."""
    runtime = Runtime(
        ctx_size=4096,
        n_gpu_layers=99,
        chat_template="chatml",
        args=["--flash-attn", "on", "--jinja"],
        aliases=["qwen-latest", "q"],
        ttl=300,
        env={"GGML_LOG": "1", "CUDA_VISIBLE_DEVICES": "0"},
    )
    fields: dict[str, Any] = {  # Any: ``changes`` stands in for any of ServerSpec's fields
        "name": "qwen",
        "model": QWEN_FILE,
        "mmproj": MMPROJ,
        "draft": TINY_FILE,
        "runtime": runtime,
        "chat_template_file": None,
        **changes,
    }
    return ServerSpec(**fields)


def tiny(**runtime: object) -> ServerSpec:
    settings: dict[str, object] = {"ctx_size": 4096, "n_gpu_layers": 99, "args": ["--flash-attn", "on"]}
    settings.update(runtime)
    return ServerSpec(
        name="tiny",
        model=TINY_FILE,
        mmproj=None,
        draft=None,
        runtime=Runtime.model_validate(settings),
        chat_template_file=None,
    )


def bare(name: str = "bare", **runtime: object) -> ServerSpec:
    return ServerSpec(
        name=name,
        model=posix_path(f"/models/{name}.gguf"),
        mmproj=None,
        draft=None,
        runtime=Runtime.model_validate(runtime),
        chat_template_file=None,
    )


def load_yaml(text: str) -> object:
    return YAML(typ="safe").load(text)


# A realistic excerpt of `llama-server --help`, laid out as llama.cpp's common_arg::to_string does:
# short option, comma, padding to 7 columns, the long names, descriptions from column 40.
HELP_HEAD = """\
----- common params -----

-h,    --help, --usage                  print usage and exit
--version                               show version and build info
-c,    --ctx-size N                     size of the prompt context (default: 4096, 0 = loaded from
                                        model)
                                        (env: LLAMA_ARG_CTX_SIZE)
-ngl,  --gpu-layers, --n-gpu-layers N   max. number of layers to store in VRAM (default: -1)
                                        (env: LLAMA_ARG_N_GPU_LAYERS)
-m,    --model FNAME                    model path to load (default: `models/$filename` with filename
                                        from `--hf-file` or `--model-url` if set, otherwise
                                        models/7B/ggml-model-f16.gguf)
                                        (env: LLAMA_ARG_MODEL)
--mmproj FILE                           path to a multimodal projector file. see tools/mtmd/README.md
                                        note: if -hf is used, this argument can be omitted
                                        (env: LLAMA_ARG_MMPROJ)
--chat-template JINJA_TEMPLATE          set custom jinja chat template (default: template taken from
                                        model's metadata)
                                        (env: LLAMA_ARG_CHAT_TEMPLATE)
--chat-template-file JINJA_TEMPLATE_FILE
                                        set custom jinja chat template file
                                        (env: LLAMA_ARG_CHAT_TEMPLATE_FILE)
-fa,   --flash-attn [on|off|auto]       set Flash Attention use ('on', 'off', or 'auto', default: 'auto')
                                        (env: LLAMA_ARG_FLASH_ATTN)

----- example-specific params -----

-a,    --alias STRING                   set alias for model name (to be used by REST API)
                                        (env: LLAMA_ARG_ALIAS)
--host HOST                             ip address to listen, or bind to an UNIX socket if the address
                                        ends with .sock (default: 127.0.0.1)
                                        (env: LLAMA_ARG_HOST)
--port PORT                             port to listen (default: 8080)
                                        (env: LLAMA_ARG_PORT)
"""
HELP_OLD_DRAFT = """\
-md,   --model-draft FNAME              draft model for speculative decoding (default: unused)
                                        (env: LLAMA_ARG_MODEL_DRAFT)
"""
HELP_NEW_DRAFT = """\
--spec-draft-model, -md, --model-draft FNAME
                                        draft model for speculative decoding (default: unused)
                                        (env: LLAMA_ARG_SPEC_DRAFT_MODEL)
"""


# -- llama-server ----------------------------------------------------------------------------------


def test_llama_server_line_is_the_exact_shell_command_with_extra_args_last() -> None:
    assert render.llama_server(qwen(), BUILT_IN) == (
        "llama-server -m /models/qwen/qwen-Q4_K_M.gguf --alias qwen --host 127.0.0.1 --port 8080"
        " -c 4096 -ngl 99 --mmproj /models/qwen/mmproj-f16.gguf --model-draft /models/tiny/tiny-Q8_0.gguf"
        " --chat-template chatml --flash-attn on --jinja\n"
    )


def test_llama_server_json_is_the_argv_list() -> None:
    document = json.loads(render.llama_server_json(qwen(), BUILT_IN))

    assert document == {
        "argv": [
            "llama-server",
            "-m",
            str(QWEN_FILE),
            "--alias",
            "qwen",
            "--host",
            "127.0.0.1",
            "--port",
            "8080",
            "-c",
            "4096",
            "-ngl",
            "99",
            "--mmproj",
            str(MMPROJ),
            "--model-draft",
            str(TINY_FILE),
            "--chat-template",
            "chatml",
            "--flash-attn",
            "on",
            "--jinja",
        ]
    }


def test_llama_server_line_quotes_paths_so_the_shell_reads_back_the_argv() -> None:
    spec = qwen(
        model=posix_path("/my models/it's here.gguf"),
        chat_template_file=posix_path("/templates/chat $x.jinja"),
    )

    line = render.llama_server(spec, BUILT_IN)

    assert shlex.split(line) == render.server_argv(spec, BUILT_IN)
    assert "--chat-template-file" in shlex.split(line)


def test_llama_server_without_settings_passes_only_model_alias_host_and_port() -> None:
    spec = bare("solo", host="0.0.0.0", port=9090)

    assert render.llama_server(spec, BUILT_IN) == (
        "llama-server -m /models/solo.gguf --alias solo --host 0.0.0.0 --port 9090\n"
    )


def test_llama_server_follows_the_installed_draft_option_name() -> None:
    flags = parse_help(HELP_HEAD + HELP_NEW_DRAFT)

    argv = render.server_argv(qwen(), flags)

    assert argv[argv.index(str(TINY_FILE)) - 1] == "--spec-draft-model"
    assert "--model-draft" not in argv


# -- llama-server-env ------------------------------------------------------------------------------


def test_llama_server_env_is_the_exact_variable_file_and_notes_the_extra_args() -> None:
    assert render.llama_server_env(qwen(), BUILT_IN) == (
        f"# {HEADER}\n"
        "# model qwen\n"
        "LLAMA_ARG_MODEL=/models/qwen/qwen-Q4_K_M.gguf\n"
        "LLAMA_ARG_ALIAS=qwen\n"
        "LLAMA_ARG_HOST=127.0.0.1\n"
        "LLAMA_ARG_PORT=8080\n"
        "LLAMA_ARG_CTX_SIZE=4096\n"
        "LLAMA_ARG_N_GPU_LAYERS=99\n"
        "LLAMA_ARG_MMPROJ=/models/qwen/mmproj-f16.gguf\n"
        "LLAMA_ARG_MODEL_DRAFT=/models/tiny/tiny-Q8_0.gguf\n"
        "LLAMA_ARG_CHAT_TEMPLATE=chatml\n"
        "# pass these on the command line too (no LLAMA_ARG_* form): --flash-attn on --jinja\n"
    )


def test_llama_server_env_without_extra_args_has_no_note() -> None:
    text = render.llama_server_env(bare(), BUILT_IN)

    assert "command line" not in text
    assert text.splitlines()[-1] == "LLAMA_ARG_PORT=8080"


@pytest.mark.parametrize("odd", ["two\nlines", 'a"quote', "it's", "back\\slash"])
def test_llama_server_env_refuses_values_env_files_read_differently(odd: str) -> None:
    # systemd's EnvironmentFile interprets quotes and backslashes, docker's --env-file does not.
    spec = qwen(chat_template_file=posix_path(f"/templates/{odd}.jinja"))

    with pytest.raises(UserError, match="newline, quote or backslash"):
        render.llama_server_env(spec, BUILT_IN)


@pytest.mark.parametrize("shell", [Shell.POWERSHELL, Shell.CMD])
def test_on_windows_the_env_file_keeps_backslashed_paths_and_still_refuses_quotes(shell: Shell) -> None:
    # No systemd there: docker's --env-file reads a backslash as itself.
    windows = qwen(chat_template_file=PureWindowsPath("C:/Users/me/templates/chat.jinja"))

    text = render.llama_server_env(windows, BUILT_IN, shell)

    assert "LLAMA_ARG_CHAT_TEMPLATE_FILE=C:\\Users\\me\\templates\\chat.jinja" in text.splitlines()
    with pytest.raises(UserError, match="newline, quote or backslash"):
        render.llama_server_env(qwen(chat_template_file=PureWindowsPath("C:/it's.jinja")), BUILT_IN, shell)


def test_llama_server_env_uses_the_installed_builds_variable_for_the_draft() -> None:
    text = render.llama_server_env(qwen(), parse_help(HELP_HEAD + HELP_NEW_DRAFT))

    assert f"LLAMA_ARG_SPEC_DRAFT_MODEL={TINY_FILE}" in text.splitlines()


def test_llama_server_env_puts_options_without_a_variable_in_the_command_line_note() -> None:
    flags = ServerFlags(draft="--spec-draft-model", source="a test")  # a draft option with no variable

    text = render.llama_server_env(qwen(), flags)

    assert not any(line.startswith("LLAMA_ARG_MODEL_DRAFT") for line in text.splitlines())
    note = text.splitlines()[-1]
    assert note.startswith("# pass these on the command line too (no LLAMA_ARG_* form): --spec-draft-model ")


def test_every_option_the_renderers_pass_has_a_built_in_variable() -> None:
    spec = qwen(chat_template_file=posix_path("/templates/chat.jinja"))

    passed = {option for option, _ in render.options(spec, BUILT_IN)}

    assert passed <= set(KNOWN_ENV)


# -- router-preset ---------------------------------------------------------------------------------


def test_router_preset_is_the_exact_ini_with_shared_settings_in_the_star_section() -> None:
    assert render.router_preset([qwen(), tiny()], BUILT_IN) == (
        f"; {HEADER}\n"
        "version = 1\n"
        "\n"
        "[*]\n"
        "ctx-size = 4096\n"
        "flash-attn = on\n"
        "n-gpu-layers = 99\n"
        "\n"
        "[qwen]\n"
        "model = /models/qwen/qwen-Q4_K_M.gguf\n"
        "mmproj = /models/qwen/mmproj-f16.gguf\n"
        "model-draft = /models/tiny/tiny-Q8_0.gguf\n"
        "chat-template = chatml\n"
        "jinja = true\n"
        "\n"
        "[tiny]\n"
        "model = /models/tiny/tiny-Q8_0.gguf\n"
    )


def test_router_preset_star_section_holds_only_what_every_model_shares_and_never_the_model() -> None:
    # Two entries serving the same file: even an equal model path stays in each section.
    twin = bare("twin", ctx_size=4096, n_gpu_layers=10)
    twin = ServerSpec(
        name="twin", model=TINY_FILE, mmproj=None, draft=None, runtime=twin.runtime, chat_template_file=None
    )

    text = render.router_preset([tiny(), twin], BUILT_IN)

    star = text.split("[*]\n", 1)[1].split("\n\n", 1)[0]
    assert star == "ctx-size = 4096"
    assert text.count(f"model = {TINY_FILE}") == 2
    assert "n-gpu-layers = 99" in text.split("[tiny]", 1)[1].split("[twin]", 1)[0]
    assert "n-gpu-layers = 10" in text.split("[twin]", 1)[1]


def test_router_preset_of_one_model_keeps_everything_in_its_own_section() -> None:
    text = render.router_preset([tiny()], BUILT_IN)

    assert text.split("\n[*]\n", 1)[1].startswith("\n[tiny]\n")
    assert "ctx-size = 4096" in text.split("[tiny]", 1)[1]


def test_router_preset_keys_are_long_option_names_without_dashes_and_no_listen_settings() -> None:
    spec = bare(
        "solo",
        host="0.0.0.0",
        port=9000,
        args=["--temp=0.7", "--seed", "-1", "--no-mmap", "--cache-type-k", "q8_0"],
    )

    lines = render.router_preset([spec], BUILT_IN).split("[solo]\n", 1)[1].splitlines()

    assert lines == [
        "model = /models/solo.gguf",
        "temp = 0.7",
        "seed = -1",
        "no-mmap = true",
        "cache-type-k = q8_0",
    ]


def test_router_preset_args_with_a_short_option_is_a_user_error() -> None:
    spec = bare("fast", args=["-fa", "on"])

    with pytest.raises(UserError, match="'-fa'") as caught:
        render.router_preset([spec], BUILT_IN)

    assert "router presets need long option names" in caught.value.message
    assert caught.value.hint is not None
    assert "--flash-attn" in caught.value.hint


def test_router_preset_names_the_draft_key_after_the_installed_option() -> None:
    text = render.router_preset([qwen()], parse_help(HELP_HEAD + HELP_NEW_DRAFT))

    assert f"spec-draft-model = {TINY_FILE}" in text.splitlines()


# -- llama-swap ------------------------------------------------------------------------------------


def test_llama_swap_is_the_exact_config_with_aliases_ttl_and_env() -> None:
    assert render.llama_swap([qwen(), tiny()], BUILT_IN) == (
        f"# {HEADER}\n"
        "models:\n"
        "  qwen:\n"
        "    cmd: |\n"
        "      llama-server \\\n"
        "        -m /models/qwen/qwen-Q4_K_M.gguf \\\n"
        "        --alias qwen \\\n"
        "        --host 127.0.0.1 \\\n"
        "        --port ${PORT} \\\n"
        "        -c 4096 \\\n"
        "        -ngl 99 \\\n"
        "        --mmproj /models/qwen/mmproj-f16.gguf \\\n"
        "        --model-draft /models/tiny/tiny-Q8_0.gguf \\\n"
        "        --chat-template chatml \\\n"
        "        --flash-attn on \\\n"
        "        --jinja\n"
        "    checkEndpoint: /health\n"
        "    aliases:\n"
        "      - qwen-latest\n"
        "      - q\n"
        "    ttl: 300\n"
        "    env:\n"
        "      - CUDA_VISIBLE_DEVICES=0\n"
        "      - GGML_LOG=1\n"
        "  tiny:\n"
        "    cmd: |\n"
        "      llama-server \\\n"
        "        -m /models/tiny/tiny-Q8_0.gguf \\\n"
        "        --alias tiny \\\n"
        "        --host 127.0.0.1 \\\n"
        "        --port ${PORT} \\\n"
        "        -c 4096 \\\n"
        "        -ngl 99 \\\n"
        "        --flash-attn on\n"
        "    checkEndpoint: /health\n"
    )


def test_llama_swap_cmd_has_one_option_per_line_and_the_port_is_llama_swaps() -> None:
    spec = qwen(runtime=qwen().runtime.model_copy(update={"args": ["--jinja", "--seed", "-1", "--no-mmap"]}))

    config = load_yaml(render.llama_swap([spec], BUILT_IN))

    assert isinstance(config, dict)
    cmd = config["models"]["qwen"]["cmd"]
    lines = [line.strip().removesuffix(" \\") for line in cmd.splitlines()]
    assert lines[0] == "llama-server"
    for line in lines[1:]:
        option, *values = shlex.split(line)
        assert option.startswith("-"), line
        assert all(not value.startswith("--") for value in values), line
    assert "--port ${PORT}" in lines
    assert lines[-3:] == ["--jinja", "--seed -1", "--no-mmap"]


def test_llama_swap_cmd_is_the_same_argv_as_llama_server_with_the_port_macro() -> None:
    spec = qwen(model=posix_path("/my models/qwen.gguf"))

    config = load_yaml(render.llama_swap([spec], BUILT_IN))

    assert isinstance(config, dict)
    cmd = config["models"]["qwen"]["cmd"]
    assert shlex.split(cmd.replace("\\\n", " ")) == render.server_argv(spec, BUILT_IN, port="${PORT}")


def test_llama_swap_leaves_out_aliases_ttl_and_env_the_manifest_does_not_set() -> None:
    config = load_yaml(render.llama_swap([bare()], BUILT_IN))

    assert isinstance(config, dict)
    assert set(config["models"]["bare"]) == {"cmd", "checkEndpoint"}


# -- llama-cpp-python ------------------------------------------------------------------------------


def test_llama_cpp_python_is_the_exact_config_file() -> None:
    assert render.llama_cpp_python([qwen(), tiny()]) == (
        "{\n"
        '  "host": "127.0.0.1",\n'
        '  "port": 8080,\n'
        '  "models": [\n'
        "    {\n"
        '      "model": "/models/qwen/qwen-Q4_K_M.gguf",\n'
        '      "model_alias": "qwen",\n'
        '      "n_ctx": 4096,\n'
        '      "n_gpu_layers": 99,\n'
        '      "clip_model_path": "/models/qwen/mmproj-f16.gguf"\n'
        "    },\n"
        "    {\n"
        '      "model": "/models/tiny/tiny-Q8_0.gguf",\n'
        '      "model_alias": "tiny",\n'
        '      "n_ctx": 4096,\n'
        '      "n_gpu_layers": 99\n'
        "    }\n"
        "  ]\n"
        "}\n"
    )


def test_llama_cpp_python_without_a_context_size_asks_for_the_trained_one() -> None:
    config = json.loads(render.llama_cpp_python([bare()]))

    assert config["models"][0]["n_ctx"] == 0
    assert config["models"][0]["n_gpu_layers"] == 0


# -- alex (the app's provider config) ----------------------------------------------------------------

APP_CONFIG = """\
# The app's settings.
app:
  name: demo      # shown in the title bar
  retries: 3

runtime:
  # which backend answers
  llm_provider: openai
  api_key: sk-remote-secret   # never for a local server
  # sampling
  temperature: 0.2
  base_url: https://api.openai.com/v1

# logging comes last
logging: {level: info}
"""


def test_alex_config_alone_is_the_exact_provider_block() -> None:
    assert alex_config(qwen()) == (
        f"# {HEADER}\n"
        "runtime:\n"
        "  llm_provider: llama.cpp\n"
        "  base_url: http://127.0.0.1:8080/v1\n"
        "  llm_model: qwen\n"
    )


def test_alex_config_merge_keeps_comments_order_and_unrelated_keys_and_drops_the_api_key() -> None:
    merged = alex_config(qwen(), existing=APP_CONFIG)

    assert merged == (
        "# The app's settings.\n"
        "app:\n"
        "  name: demo      # shown in the title bar\n"
        "  retries: 3\n"
        "\n"
        "runtime:\n"
        "  # which backend answers\n"
        "  llm_provider: llama.cpp\n"
        "  # sampling\n"
        "  temperature: 0.2\n"
        "  base_url: http://127.0.0.1:8080/v1\n"
        "  llm_model: qwen\n"
        "\n"
        "# logging comes last\n"
        "logging: {level: info}\n"
    )


def test_alex_config_removes_the_api_key_wherever_it_stands_and_keeps_the_comment_lines_around_it() -> None:
    first = "runtime:\n  api_key: sk-1  # remote\n  # about the provider\n  llm_provider: openai\n# the end\n"
    last = "runtime:\n  llm_provider: openai\n  api_key: sk-1\n# --- logging ---\nlogging:\n  level: info\n"

    assert alex_config(qwen(), existing=first) == (
        "runtime:\n"
        "  # about the provider\n"
        "  llm_provider: llama.cpp\n"
        "  base_url: http://127.0.0.1:8080/v1\n"
        "  llm_model: qwen\n"
        "# the end\n"
    )
    assert alex_config(qwen(), existing=last) == (
        "runtime:\n"
        "  llm_provider: llama.cpp\n"
        "  base_url: http://127.0.0.1:8080/v1\n"
        "  llm_model: qwen\n"
        "# --- logging ---\n"
        "logging:\n"
        "  level: info\n"
    )


def test_alex_config_adds_a_runtime_block_after_the_existing_keys_and_comments() -> None:
    existing = "app:\n  name: demo\n  tags:\n    - a  # first\n# the end\n"

    assert alex_config(qwen(), existing=existing) == (
        "app:\n"
        "  name: demo\n"
        "  tags:\n"
        "    - a  # first\n"
        "runtime:\n"
        "  llm_provider: llama.cpp\n"
        "  base_url: http://127.0.0.1:8080/v1\n"
        "  llm_model: qwen\n"
        "# the end\n"
    )


def test_alex_config_merged_into_a_file_of_comments_only_keeps_them() -> None:
    merged = alex_config(qwen(), existing="# my app\n# settings follow\n")

    assert merged.startswith("# my app\n# settings follow\nruntime:\n")
    assert HEADER not in merged


@pytest.mark.parametrize("spelling", sorted(PROVIDER_ALIASES))
def test_alex_config_keeps_the_users_spelling_of_the_provider(spelling: str) -> None:
    existing = f"runtime:\n  llm_provider: {spelling}\n  llm_model: old\n  base_url: http://old:1/v1\n"

    merged = load_yaml(alex_config(qwen(), existing=existing))

    assert merged == {
        "runtime": {"llm_provider": spelling, "llm_model": "qwen", "base_url": "http://127.0.0.1:8080/v1"}
    }


def test_alex_config_replaces_another_provider_and_sets_base_url_and_model() -> None:
    merged = load_yaml(
        alex_config(qwen(), existing="runtime:\n  llm_provider: ollama\n  llm_model: llama3\n")
    )

    assert merged == {
        "runtime": {"llm_provider": "llama.cpp", "llm_model": "qwen", "base_url": "http://127.0.0.1:8080/v1"}
    }


def test_alex_config_base_url_follows_host_and_port_or_the_given_url() -> None:
    ipv6 = bare("six", host="::1", port=9001)

    assert load_yaml(alex_config(ipv6)) == {
        "runtime": {"llm_provider": "llama.cpp", "base_url": "http://[::1]:9001/v1", "llm_model": "six"}
    }
    given = load_yaml(alex_config(ipv6, base_url="http://gpu-box:8080/v1"))
    assert isinstance(given, dict)
    assert given["runtime"]["base_url"] == "http://gpu-box:8080/v1"


def test_alex_config_refuses_to_merge_into_a_yaml_list() -> None:
    with pytest.raises(UserError, match="not a YAML mapping"):
        alex_config(qwen(), existing="- one\n- two\n")


def test_alex_config_merged_again_is_unchanged() -> None:
    once = alex_config(qwen(), existing=APP_CONFIG)

    assert alex_config(qwen(), existing=once) == once


# -- determinism, single ---------------------------------------------------------------------------


def test_every_renderer_gives_the_same_bytes_for_the_same_input() -> None:
    def all_formats() -> list[str]:
        specs = [qwen(), tiny()]
        return [
            render.llama_server(specs[0], BUILT_IN),
            render.llama_server_json(specs[0], BUILT_IN),
            render.llama_server_env(specs[0], BUILT_IN),
            render.router_preset(specs, BUILT_IN),
            render.llama_swap(specs, BUILT_IN),
            render.llama_cpp_python(specs),
            alex_config(specs[0], existing=APP_CONFIG),
        ]

    first, second = all_formats(), all_formats()

    assert [text.encode() for text in first] == [text.encode() for text in second]


def test_env_order_in_the_manifest_does_not_change_the_llama_swap_output() -> None:
    one = qwen(runtime=qwen().runtime.model_copy(update={"env": {"B": "2", "A": "1"}}))
    other = qwen(runtime=qwen().runtime.model_copy(update={"env": {"A": "1", "B": "2"}}))

    assert render.llama_swap([one], BUILT_IN) == render.llama_swap([other], BUILT_IN)


def test_single_returns_the_one_spec() -> None:
    spec = qwen()

    assert single([spec], "llama-server") is spec


def test_single_with_several_specs_is_a_user_error_naming_them() -> None:
    with pytest.raises(UserError) as caught:
        single([qwen(), tiny()], "llama-server")

    assert caught.value.message == "llama-server describes one model, and 2 are selected (qwen, tiny)"
    assert caught.value.hint is not None
    assert "--only NAME" in caught.value.hint


def test_single_with_no_spec_is_a_user_error() -> None:
    with pytest.raises(UserError, match="0 are selected"):
        single([], "llama-server-env")


# -- parse_help ------------------------------------------------------------------------------------


def test_parse_help_of_an_older_build_keeps_model_draft_and_reads_every_variable() -> None:
    flags = parse_help(HELP_HEAD + HELP_OLD_DRAFT, source="test help")

    assert flags.draft == "--model-draft"
    assert flags.source == "test help"
    assert {option: flags.env_for(option) for option in KNOWN_ENV} == dict(KNOWN_ENV)
    assert flags.env_for("--flash-attn") == "LLAMA_ARG_FLASH_ATTN"
    assert flags.env_for("--gpu-layers") == "LLAMA_ARG_N_GPU_LAYERS"
    assert flags.env_for("--help") is None  # no variable shown for it


def test_parse_help_of_a_newer_build_uses_spec_draft_model_and_its_variable() -> None:
    flags = parse_help(HELP_HEAD + HELP_NEW_DRAFT)

    assert flags.draft == "--spec-draft-model"
    assert flags.env_for("--spec-draft-model") == "LLAMA_ARG_SPEC_DRAFT_MODEL"
    assert flags.env_for("--model-draft") == "LLAMA_ARG_SPEC_DRAFT_MODEL"
    assert flags.env_for("--model") == "LLAMA_ARG_MODEL"


def test_parse_help_reads_the_variables_a_build_renamed() -> None:
    renamed = HELP_HEAD.replace("(env: LLAMA_ARG_MODEL)", "(env: LLAMA_ARG_MODEL_PATH)")

    flags = parse_help(renamed + HELP_OLD_DRAFT)

    assert flags.env_for("--model") == "LLAMA_ARG_MODEL_PATH"


def test_parse_help_does_not_take_a_wrapped_description_for_an_option() -> None:
    # A description line that happens to start with an option name belongs to the option above it.
    text = (
        "--lora FNAME                            path to LoRA adapter (use comma-separated values to load\n"
        "                                        --lora-scaled for scaled adapters)\n"
        "                                        (env: LLAMA_ARG_LORA)\n"
    )

    flags = parse_help(text)

    assert flags.env_for("--lora") == "LLAMA_ARG_LORA"
    assert flags.env_for("--lora-scaled") is None


def test_parse_help_of_nothing_gives_the_built_in_names() -> None:
    flags = parse_help("")

    assert flags.draft == "--model-draft"
    assert dict(flags.env) == dict(KNOWN_ENV)


def test_lora_adapters_go_to_one_comma_separated_lora_option() -> None:
    spec = qwen(lora=(posix_path("/s/a.gguf"), posix_path("/s/b.gguf")))

    argv = render.server_argv(spec, BUILT_IN)

    assert argv[argv.index("--lora") + 1] == "/s/a.gguf,/s/b.gguf"
    assert "lora = /s/a.gguf,/s/b.gguf" in render.router_preset([spec], BUILT_IN).splitlines()


def test_lora_has_no_env_variable_so_the_env_file_says_to_pass_it_on_the_command_line() -> None:
    text = render.llama_server_env(qwen(lora=(posix_path("/s/a.gguf"),)), BUILT_IN)

    assert not any(line.startswith("LLAMA_ARG_LORA") for line in text.splitlines())
    assert "--lora /s/a.gguf" in text.splitlines()[-1]


def test_llama_cpp_python_takes_one_lora_adapter() -> None:
    one = json.loads(render.llama_cpp_python([qwen(lora=(posix_path("/s/a.gguf"),))]))
    assert one["models"][0]["lora_path"] == "/s/a.gguf"

    with pytest.raises(UserError, match="takes one LoRA adapter, not 2"):
        render.llama_cpp_python([qwen(lora=(posix_path("/s/a.gguf"), posix_path("/s/b.gguf")))])


def test_a_lora_path_with_a_comma_is_refused() -> None:
    with pytest.raises(UserError, match="comma"):
        render.server_argv(qwen(lora=(posix_path("/s/a,b.gguf"),)), BUILT_IN)


def test_one_list_of_formats_for_the_manifest_the_renderers_and_the_cli() -> None:
    """EmitFormat is the one list: every format has a renderer, the manifest accepts exactly these
    (and refuses another), and the CLI's help names each."""
    from typer.testing import CliRunner

    from alex_models.cli import app
    from alex_models.emit.llama_cpp import RENDERERS
    from alex_models.formats import EmitFormat
    from alex_models.manifest import EmitTarget

    assert set(RENDERERS) == set(EmitFormat)
    for fmt in EmitFormat:
        assert EmitTarget.model_validate({"format": str(fmt), "path": "out"}).format is fmt
    with pytest.raises(ValueError, match="llama-server"):
        EmitTarget.model_validate({"format": "ollama", "path": "out"})
    help_text = " ".join(CliRunner().invoke(app, ["emit", "--help"], terminal_width=400).output.split())
    assert all(str(fmt) in help_text for fmt in EmitFormat)
