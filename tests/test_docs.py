"""The configuration docs against the code: every example parses, every name exists, so they cannot drift."""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, cast, get_args

import pytest
from ruamel.yaml import YAML
from typer.core import TyperGroup

from alex_models.api import lock, read_lock
from alex_models.cli import app, reference
from alex_models.emit.flags import KNOWN_ENV
from alex_models.formats import EmitFormat
from alex_models.lock import Lock, LockedFile, LockedModel, Role
from alex_models.manifest import (
    Defaults,
    EmitTarget,
    Manifest,
    ModelSpec,
    Runtime,
    load_manifest,
    parse_manifest,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "docs" / "reference" / "CONFIG.md"
ENV_EXAMPLE = ROOT / ".env.example"
PACKAGE = ROOT / "alex_models"

_FENCE_RE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_VARIABLE_RE = re.compile(r"^#?[ \t]*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


def blocks(language: str) -> list[str]:
    return [body for lang, body in _FENCE_RE.findall(CONFIG.read_text(encoding="utf-8")) if lang == language]


def manifests() -> list[str]:
    return [block for block in blocks("yaml") if re.search(r"^version:", block, re.MULTILINE)]


def env_example_names() -> list[str]:
    return _VARIABLE_RE.findall(ENV_EXAMPLE.read_text(encoding="utf-8"))


def test_config_md_has_full_manifest_examples() -> None:
    assert len(manifests()) >= 2


@pytest.mark.parametrize("index", range(len(manifests())))
def test_every_full_manifest_in_config_md_parses(index: int) -> None:
    parse_manifest(manifests()[index], f"{CONFIG.name} manifest example {index + 1}")


def test_the_complete_manifest_example_uses_every_emit_format() -> None:
    complete = max(manifests(), key=len)

    manifest = parse_manifest(complete, CONFIG.name)

    assert {target.format for target in manifest.emit} == set(EmitFormat)


def test_every_yaml_block_in_config_md_is_valid_yaml() -> None:
    for block in blocks("yaml"):
        YAML(typ="safe").load(block)


@pytest.mark.parametrize(
    ("section", "keys"),
    [("runtime", Runtime.model_fields), ("model", ModelSpec.model_fields), ("emit", EmitTarget.model_fields)],
)
def test_config_md_documents_every_manifest_key(section: str, keys: dict[str, object]) -> None:
    text = CONFIG.read_text(encoding="utf-8")

    missing = [key for key in keys if f"| `{key}` |" not in text]

    assert missing == [], f"{section} keys missing from the tables of {CONFIG.name}"


def test_config_md_has_a_section_for_every_emit_format() -> None:
    headings = re.findall(r"^### `([a-z.-]+)`$", CONFIG.read_text(encoding="utf-8"), re.MULTILINE)

    assert [name for name in EmitFormat if name not in headings] == []


def test_config_md_lists_exactly_the_variables_the_env_emitter_writes() -> None:
    section = CONFIG.read_text(encoding="utf-8").split("### `llama-server-env`", 1)[1].split("###", 1)[0]
    listed = set(re.findall(r"`(LLAMA_ARG_[A-Z0-9_]+)`", section))

    assert listed == set(KNOWN_ENV.values())


@pytest.mark.parametrize("doc", [ENV_EXAMPLE, CONFIG], ids=lambda path: path.name)
def test_every_llama_arg_named_is_one_the_emitter_can_write(doc: Path) -> None:
    names = re.findall(r"LLAMA_ARG_[A-Z0-9_]+", doc.read_text(encoding="utf-8"))

    assert names, f"no LLAMA_ARG_* variable in {doc.name}"
    assert [name for name in names if name not in KNOWN_ENV.values()] == []


def test_env_example_lists_every_variable_the_env_emitter_writes() -> None:
    assert set(KNOWN_ENV.values()) <= set(env_example_names())


def test_env_example_lists_the_hub_and_store_variables() -> None:
    names = set(env_example_names())

    expected = {"HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "ALEX_MODELS_HOME", "ALEX_MODELS_HF_CACHE"}
    assert expected <= names


def test_every_alex_models_variable_in_env_example_is_read_by_the_code() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py"))

    unread = [name for name in env_example_names() if name.startswith("ALEX_MODELS_") and name not in source]

    assert unread == []


def test_every_variable_in_env_example_has_a_comment_line_above_it() -> None:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()

    for above, line in itertools.pairwise(lines):
        if _VARIABLE_RE.match(line):
            assert above.startswith("# "), line
            assert not _VARIABLE_RE.match(above), line


# --- The CLI reference and the guides, against the command tree ---

CLI_MD = ROOT / "docs" / "reference" / "cli.md"
GUIDES = [ROOT / "docs" / "guides" / name for name in ("ci.md", "air-gapped.md", "fleet.md")]
README = ROOT / "README.md"
COMMANDS = {entry.words: entry for entry in reference.walk(app)}
_SHELL_OPERATORS = {"&&", "||", "|", ";", "&"}
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_YAML_KEY_RE = re.compile(r"^\s*(?:-\s+)?[\w-]+:\s+")  # `run: …`, `entry: …`: the value is the command


def fenced(doc: Path, language: str | None = None) -> list[str]:
    text = doc.read_text(encoding="utf-8")
    return [body for lang, body in _FENCE_RE.findall(text) if language is None or lang == language]


def command_lines(doc: Path) -> list[list[str]]:
    """The arguments after ``alex-models`` of every command it runs in the doc's code blocks."""
    found: list[list[str]] = []
    for block in fenced(doc):
        for line in block.splitlines():
            if "alex-models" not in line:
                continue
            lexer = shlex.shlex(_YAML_KEY_RE.sub("", line), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            segment: list[str] = []
            for token in [*lexer, ";"]:
                if token not in _SHELL_OPERATORS:
                    segment.append(token)
                    continue
                words = list(itertools.dropwhile(_ASSIGNMENT_RE.match, segment))  # HF_ENDPOINT=… alex-models
                if words and words[0].rsplit("/", 1)[-1] == "alex-models":  # or .venv/bin/alex-models
                    found.append(words[1:])
                segment = []
    return found


def split_command(args: list[str]) -> tuple[reference.Entry, list[str]]:
    """The deepest command ``args`` name, and the arguments left for it."""
    depth = max(n for n in range(len(args) + 1) if tuple(args[:n]) in COMMANDS)
    return COMMANDS[tuple(args[:depth])], args[depth:]


def test_cli_md_is_what_the_generator_prints_now() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "alex_models.cli.reference"], capture_output=True, text=True, check=True
    ).stdout

    assert generated == CLI_MD.read_text(encoding="utf-8"), (
        f"{CLI_MD.relative_to(ROOT)} is out of date with the CLI; regenerate it: {reference.REGENERATE}"
    )


@pytest.mark.parametrize("words", list(COMMANDS), ids=lambda words: " ".join(words) or "alex-models")
def test_the_cli_reference_has_every_command_and_option(words: tuple[str, ...]) -> None:
    entry = COMMANDS[words]
    title = " ".join(("alex-models", *words))
    page = reference.render(reference.walk(app))

    section = page if not words else page.split(f"## `{title}`\n", 1)[1].split("\n## ", 1)[0]

    assert f"```\n{title} [OPTIONS]" in section
    for param in entry.command.params:
        if not getattr(param, "hidden", False):
            names = param.opts if param.param_type_name == "option" else [param.metavar or param.name]
            assert all(f"`{name}" in section or f" {name}" in section for name in names), param.name
            if param.envvar:
                assert str(param.envvar) in section


@pytest.mark.parametrize("doc", GUIDES, ids=lambda doc: doc.name)
def test_each_guide_runs_alex_models(doc: Path) -> None:
    assert len(command_lines(doc)) >= 4


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(args, id=f"{doc.name}: {shlex.join(args)}")
        for doc in [*GUIDES, README]
        for args in command_lines(doc)
    ],
)
def test_every_command_in_the_guides_parses_against_the_cli(args: list[str]) -> None:
    entry, rest = split_command(args)

    assert not isinstance(entry.command, TyperGroup), f"'alex-models {shlex.join(args)}' names no command"
    # Parses options and arguments as the real CLI would, without running the command: an unknown
    # option, a missing required one or a value of the wrong type raises here.
    entry.command.make_context(entry.context.command_path, rest)


@pytest.mark.parametrize("doc", [*GUIDES, README], ids=lambda doc: doc.name)
def test_every_option_named_inline_in_the_guides_exists(doc: Path) -> None:
    for span in re.findall(r"`alex-models ([^`]+)`", doc.read_text(encoding="utf-8")):
        entry, rest = split_command(span.split())
        names = {name for param in entry.command.params for name in (*param.opts, *param.secondary_opts)}

        assert [word for word in rest if word.startswith("-") and word not in names] == [], span


@pytest.mark.parametrize("doc", GUIDES, ids=lambda doc: doc.name)
def test_every_yaml_block_in_the_guides_is_valid_yaml(doc: Path) -> None:
    for block in fenced(doc, "yaml"):
        YAML(typ="safe").load(block)


def guide_yaml(doc: Path, top_key: str, name: str | None = None) -> dict[str, Any]:
    """The one YAML block of ``doc`` with ``top_key`` (and, for workflows, this ``name``)."""
    [document] = [
        d
        for d in map(YAML(typ="safe").load, fenced(doc, "yaml"))
        if top_key in d and (name is None or d.get("name") == name)
    ]
    return cast("dict[str, Any]", document)


def run_lines(steps: list[dict[str, Any]]) -> list[str]:
    return [str(step.get("run", "")) for step in steps]


def test_the_ci_workflow_checks_caches_on_the_lock_and_syncs_locked() -> None:
    job = guide_yaml(GUIDES[0], "jobs", "models")["jobs"]["models"]
    steps: list[dict[str, Any]] = job["steps"]
    [cache] = [step for step in steps if str(step.get("uses", "")).startswith("actions/cache@")]
    runs = run_lines(steps)

    assert "hashFiles('models.lock')" in cache["with"]["key"]
    assert cache["with"]["path"] == "${{ env.ALEX_MODELS_HOME }}"
    assert "ALEX_MODELS_HOME" in job["env"]
    assert job["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    # The offline check first, then the cache, then the download into it.
    assert (
        runs.index("alex-models lock --check") < steps.index(cache) < runs.index("alex-models sync --locked")
    )


def test_the_ci_deploy_job_syncs_frozen() -> None:
    deploy = guide_yaml(GUIDES[0], "jobs", "models")["jobs"]["deploy"]

    assert "alex-models sync --frozen" in run_lines(deploy["steps"])


def test_the_scheduled_workflow_upgrades_into_a_pull_request_only_when_outdated_exits_1() -> None:
    workflow = guide_yaml(GUIDES[0], "jobs", "models-upgrade")
    steps: list[dict[str, Any]] = workflow["jobs"]["upgrade"]["steps"]
    [check] = [step for step in steps if "alex-models outdated --exit-code" in str(step.get("run", ""))]
    [upgrade] = [step for step in steps if step.get("run") == "alex-models lock --upgrade"]
    [pull] = [
        step for step in steps if str(step.get("uses", "")).startswith("peter-evans/create-pull-request@")
    ]

    assert "schedule" in workflow["on"]
    assert workflow["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert check["shell"] == "bash"  # pipefail: the status piped through tee is alex-models' own
    assert '"$status" -eq 1' in check["run"]
    condition = f"steps.{check['id']}.outputs.moved == 'true'"
    assert steps.index(check) < steps.index(upgrade) < steps.index(pull)
    assert upgrade["if"] == pull["if"] == condition
    assert pull["with"]["add-paths"] == "models.lock"


def test_the_pre_commit_hook_runs_lock_check_on_the_manifest_and_lock_only() -> None:
    [local] = [repo for repo in guide_yaml(GUIDES[0], "repos")["repos"] if repo["repo"] == "local"]
    [hook] = local["hooks"]
    files = re.compile(hook["files"])

    assert hook["entry"] == "alex-models lock --check"
    assert hook["language"] in {"system", "unsupported"}
    assert hook["pass_filenames"] is False  # lock --check takes no file arguments
    assert [name for name in ("models.yaml", "models.lock") if not files.search(name)] == []
    assert [name for name in ("models.yaml.bak", "docs/models.yaml", "README.md") if files.search(name)] == []


# --- The lockfile and top-level manifest references, against the models ---

LOCKFILE_MD = ROOT / "docs" / "reference" / "lockfile.md"


def test_config_md_documents_every_top_level_and_defaults_key() -> None:
    text = CONFIG.read_text(encoding="utf-8")

    keys = [*Manifest.model_fields, *Defaults.model_fields]

    assert [key for key in keys if f"| `{key}` |" not in text] == []


def test_lockfile_md_documents_every_field_of_a_lock() -> None:
    table = LOCKFILE_MD.read_text(encoding="utf-8").split("## Fields", 1)[1].split("\n## ", 1)[0]
    fields = [f"`{key}`" for key in (*Lock.model_fields, *LockedModel.model_fields) if key != "files"]
    fields += [f"`files[].{key}`" for key in LockedFile.model_fields]

    assert [field for field in fields if field not in table] == []


def test_lockfile_md_names_every_file_role() -> None:
    [row] = [
        line for line in LOCKFILE_MD.read_text(encoding="utf-8").splitlines() if "| `files[].role` |" in line
    ]

    assert [role for role in get_args(Role) if f"`{role}`" not in row] == []


# --- The README and the repository's own example project ---


def test_the_readme_quickstart_runs_the_repository_example() -> None:
    assert [args[0] for args in command_lines(README) if args] == [
        "demo", "lock", "sync", "emit", "probe",
    ]  # fmt: skip


def test_the_readme_test_command_is_the_one_ci_runs_last() -> None:
    [command] = [b.strip() for b in fenced(README, "sh") if b.strip().endswith(".venv/bin/pytest")]
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines() if line]

    assert ci_lines[-1] == command


def test_the_repository_example_lock_is_current_and_intact() -> None:
    result = lock(ROOT / "models.yaml", check=True)  # no network: compares by meaning
    pinned = read_lock(ROOT / "models.lock")  # fully validated on read

    assert result.drift == ()
    assert pinned is not None
    [entry] = pinned.models.values()
    assert [(f.path, f.role) for f in entry.files] == [("qwen2.5-0.5b-instruct-q4_k_m.gguf", "model")]


def test_the_readme_shows_the_repository_manifest(tmp_path: Path) -> None:
    [block] = fenced(README, "yaml")
    shown = tmp_path / "models.yaml"
    shown.write_text(block, encoding="utf-8")

    assert load_manifest(shown) == load_manifest(ROOT / "models.yaml")
