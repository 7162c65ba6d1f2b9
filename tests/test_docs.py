"""The configuration docs against the code: every example parses, every name exists, so they cannot drift."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from alex_models.emit import FORMATS
from alex_models.emit.flags import KNOWN_ENV
from alex_models.manifest import EmitTarget, ModelSpec, Runtime, parse_manifest

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

    assert {target.format for target in manifest.emit} == set(FORMATS)


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

    assert [name for name in FORMATS if name not in headings] == []


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
