"""What a new user meets first, through the real CLI in a subprocess: the five common errors (one
``error:`` line, one ``hint:`` line naming the fix, the documented exit code), ``--json`` on every
command a script reads, colour only on a terminal, and shell completion."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
from pathlib import Path
from typing import Any

import httpx2
import pytest
from faultkit import locked_project
from helpers import CLI, cli, free_port, small_disk, write_manifest

from alex_models._units import human_size
from alex_models.fetch import transport_verdict
from alex_models.mirror import MirrorRoot, MirrorServer

ONE_MODEL = {"m": {"repo": "org/m", "quant": "Q4_K_M"}}
# How the system words a connection to a closed port (Windows: WSAECONNREFUSED's text).
REFUSED = "actively refused it" if os.name == "nt" else "Connection refused"


def one_error(result: subprocess.CompletedProcess[str], exit_code: int) -> tuple[str, str]:
    """The error and hint lines of a failed run, which printed nothing else."""
    assert result.returncode == exit_code, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 2, result.stderr
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: ")
    assert hint.startswith("hint: ")
    return error, hint


# -- a) no models.yaml here ------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["lock"], ["sync"], ["status"], ["verify"], ["path", "m"]])
def test_no_manifest_names_the_path_looked_at_and_says_init_or_dash_f(
    project: Path, command: list[str]
) -> None:
    error, hint = one_error(cli(project, *command), 1)

    assert error == f"error: no manifest at {project / 'models.yaml'}"
    assert "run 'alex-models init'" in hint
    assert "pass -f PATH" in hint


# -- b) a typo in a key ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where", "key", "close"),
    [
        ("version: 1\nmodels:\n  m:\n    repo: org/m\n    qaunt: Q4_K_M\n", "5:5", "qaunt", "quant"),
        ("version: 1\nmodles:\n  m: {repo: org/m, quant: Q4_K_M}\n", "2:1", "modles", "models"),
    ],
)
def test_a_misspelt_key_names_line_column_and_the_close_match(
    project: Path, text: str, where: str, key: str, close: str
) -> None:
    (project / "models.yaml").write_text(text, encoding="utf-8")

    error, hint = one_error(cli(project, "lock"), 1)

    assert error.startswith(f"error: models.yaml:{where}: unknown key '{key}'")
    assert hint == f"hint: did you mean '{close}'?"


# -- c) a private or gated repo without a (good) token ---------------------------------------------


@pytest.mark.parametrize(
    ("private", "token", "words"),
    [
        (True, None, ["repo org/m not found", "private and no token is set"]),
        (True, "hf_wrong", ["refused the token for org/m"]),
        (False, None, ["org/m is a gated repo and no token is set"]),
        (False, "hf_other", ["org/m is a gated repo", "not been granted access"]),
    ],
)
def test_a_private_or_gated_repo_without_a_good_token_says_set_hf_token(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    private: bool,
    token: str | None,
    words: list[str],
) -> None:
    # An access problem is the user's to fix with a token: exit 1 (UserError), as for any lock input.
    mirror_root.create_repo("org/other", tokens=["hf_other"])
    mirror_root.create_repo("org/m", private=private, gated=False if private else "auto", tokens=["hf_ok"])
    mirror_root.commit("org/m", {"m-Q4_K_M.gguf": b"GGUF\n" * 10})
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)
    write_manifest(project, ONE_MODEL)

    error, hint = one_error(cli(project, "lock"), 1)

    assert all(word in error for word in words), error
    assert "HF_TOKEN" in hint
    assert "hf auth login" in hint


# -- d) no disk space ------------------------------------------------------------------------------


@pytest.mark.linux("a tmpfs mount, for a small disk")
def test_a_disk_too_small_names_needed_free_where_and_the_fix(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tests/reliability/test_full_disk.py covers what is (not) written; here: the words.
    [model] = locked_project(mirror_root, mirror, project, tmp_path / "ggufs", [300_000], monkeypatch)

    with small_disk(tmp_path / "small-disk", 64 * 1024, monkeypatch) as store:
        error, hint = one_error(cli(project, "sync"), 1)

    assert re.fullmatch(
        rf"error: not enough disk space in {re.escape(str(store))}: {re.escape(human_size(model.size))} needed, [0-9.]+ [KMGT]?B free",
        error,
    )
    assert "free some space" in hint
    assert "ALEX_MODELS_HOME" in hint


# -- e) no network ---------------------------------------------------------------------------------


def test_no_network_fails_fast_naming_the_endpoint_and_the_way_out(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    write_manifest(project, ONE_MODEL)

    error, hint = one_error(cli(project, "lock"), 4)

    assert error.startswith(f"error: cannot reach {endpoint} for org/m: ")
    assert REFUSED in error
    assert "check the network and HF_ENDPOINT" in hint
    assert "--offline" in hint


def test_no_network_during_sync_names_the_host_and_says_it_resumes(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [model] = locked_project(mirror_root, mirror, project, tmp_path / "ggufs", [1000], monkeypatch)
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)

    error, hint = one_error(cli(project, "sync", "--frozen", "--quiet"), 4)

    assert error.startswith(f"error: {model.repo}/{model.file}: gave up on {endpoint} after ")
    assert REFUSED in error
    assert "check the network and HF_ENDPOINT" in hint
    assert "resumes" in hint
    assert "--offline" in hint


def test_nobody_listening_is_retried_after_a_short_wait_not_the_backoff() -> None:
    # A refused connection is cheap to try again and rarely fixed by waiting seconds.
    request = httpx2.Request("GET", "http://127.0.0.1:9/")
    assert transport_verdict(httpx2.ConnectError("refused", request=request)) == (True, 0.2)
    assert transport_verdict(httpx2.ReadTimeout("slow", request=request)) == (True, None)


# -- --json on every command a script reads --------------------------------------------------------


def as_json(result: subprocess.CompletedProcess[str], kind: str) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    payload: dict[str, Any] = json.loads(result.stdout)  # Any: whatever JSON the command printed
    assert payload["format"] == 1
    assert payload["kind"] == kind
    return payload


def test_every_read_command_prints_one_json_object_with_its_keys(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [model] = locked_project(mirror_root, mirror, project, tmp_path / "ggufs", [1000], monkeypatch)

    synced = as_json(cli(project, "sync", "--json"), "sync")
    assert {"downloaded", "reused", "models", "store", "lock"} <= synced.keys()
    main = Path(str(synced["models"][model.key]["main"]))
    assert main.is_file()

    assert as_json(cli(project, "path", model.key, "--json"), "path") == {
        "format": 1,
        "kind": "path",
        "name": model.key,
        "path": str(main),
    }
    status = as_json(cli(project, "status", "--json"), "status")
    assert status["models"][model.key]["state"] == "present"
    assert as_json(cli(project, "verify", "--json"), "verify")["corrupt"] == []
    assert as_json(cli(project, "lock", "--json"), "lock")["stale"] is False
    assert "bytes_freed" in as_json(cli(project, "gc", "--dry-run", "--json"), "gc")

    pulled = as_json(cli(project, "pull", model.repo, model.file, "--json"), "pull")
    assert pulled == pulled | {"repo": model.repo, "file": model.file, "revision": "main"}
    assert Path(str(pulled["path"])).is_file()

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert as_json(cli(fresh, "init", "--json"), "init")["manifest"] == str(fresh / "models.yaml")


def test_an_error_with_json_is_also_one_json_object_on_stdout(project: Path) -> None:
    result = cli(project, "status", "--json")

    assert result.returncode == 1
    assert json.loads(result.stdout) == {
        "format": 1,
        "kind": "error",
        "error": {
            "type": "ManifestError",
            "exit_code": 1,
            "message": f"no manifest at {project / 'models.yaml'}",
            "hint": "run 'alex-models init' to write a starter models.yaml, or pass -f PATH to use another",
        },
    }
    assert result.stderr.startswith("error: no manifest at ")


# -- colour only on a terminal ---------------------------------------------------------------------

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def coloured(output: str) -> bool:
    """Whether any SGR sequence sets a colour (bold and dim are styles, which NO_COLOR allows)."""
    for params in SGR.findall(output):
        codes = [int(code) for code in params.split(";") if code]
        if any(30 <= code <= 38 or 40 <= code <= 48 or 90 <= code <= 107 for code in codes):
            return True
    return False


def in_terminal(cwd: Path, *args: str, **env: str) -> str:
    """The CLI's stdout and stderr, both a pseudo-terminal, as one text."""
    leader, follower = os.openpty()
    environ = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", **env}
    for name in ("NO_COLOR", "FORCE_COLOR"):
        if name not in env:
            environ.pop(name, None)
    with subprocess.Popen(
        [str(CLI), *args], cwd=cwd, env=environ, stdin=follower, stdout=follower, stderr=follower
    ) as process:
        os.close(follower)
        output = b""
        while select.select([leader], [], [], 30)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        process.wait(timeout=30)
    return output.decode()


@pytest.mark.posix("a pseudo-terminal")
def test_colour_on_a_terminal_and_none_with_no_color(project: Path) -> None:
    plain = in_terminal(project, "lock", NO_COLOR="1")

    assert coloured(in_terminal(project, "lock"))
    assert not coloured(plain)
    assert "alex-models" in plain


@pytest.mark.posix("a pseudo-terminal")
def test_help_is_plain_text_on_a_terminal_too(project: Path) -> None:
    """Click's help, not typer's rich panels: importing rich would take about as long as the whole
    plain ``--help`` (docs/benchmarks.md, "Start-up"). Error labels keep their colour (above)."""
    output = in_terminal(project, "--help")

    assert "\x1b" not in output
    assert "Usage: alex-models" in output


@pytest.mark.parametrize("args", [["--help"], ["lock"], ["nosuch"]], ids=["help", "error", "usage"])
def test_no_escape_at_all_when_piped(project: Path, args: list[str]) -> None:
    result = cli(project, *args)

    assert "\x1b" not in result.stdout + result.stderr
    assert "alex-models" in result.stdout + result.stderr


@pytest.mark.posix("a pseudo-terminal")
def test_term_dumb_has_no_colour(project: Path) -> None:
    assert not coloured(in_terminal(project, "lock", TERM="dumb"))


def test_force_color_colours_a_pipe(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    result = cli(project, "lock")
    assert coloured(result.stdout + result.stderr)


# -- shell completion ------------------------------------------------------------------------------


def complete(cwd: Path, line: str) -> list[str]:
    """What bash completion offers for the last word of ``line`` (click's env protocol)."""
    words = line.split(" ")
    result = subprocess.run(
        [str(CLI)],
        cwd=cwd,
        env={
            **os.environ,
            "_ALEX_MODELS_COMPLETE": "complete_bash",
            "COMP_WORDS": line,
            "COMP_CWORD": str(len(words) - 1),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.split()


def test_completion_offers_commands_options_and_the_manifests_model_names(project: Path) -> None:
    write_manifest(project, {"qwen-a": ONE_MODEL["m"], "qwen-b": ONE_MODEL["m"], "tiny": ONE_MODEL["m"]})
    write_manifest(project / "other", {"zeta": ONE_MODEL["m"]})

    assert complete(project, "alex-models sy") == ["sync"]
    assert complete(project, "alex-models sync --onl") == ["--only"]
    assert complete(project, "alex-models path q") == ["qwen-a", "qwen-b"]
    assert complete(project, "alex-models sync --only ") == ["qwen-a", "qwen-b", "tiny"]
    assert complete(project, "alex-models emit -f other/models.yaml --only ") == ["zeta"]
    assert complete(project / "other", "alex-models path nope") == []


def test_completion_without_a_manifest_offers_nothing_and_fails_nothing(project: Path) -> None:
    assert complete(project, "alex-models path ") == []
