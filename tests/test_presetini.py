"""A llama.cpp preset INI read as llama.cpp's common/preset.cpp reads it, and the settings of a
repo's preset a model gets (``emit.repo_preset``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alex_models.emit import ServerSpec
from alex_models.emit.flags import ServerFlags, parse_help
from alex_models.emit.llama_cpp import preset_args
from alex_models.emit.repo_preset import repo_preset
from alex_models.manifest import Runtime
from alex_models.presetini import PresetError, parse
from alex_models.remote import PresetDraft
from alex_models.sidecars import best_model


def values(text: str) -> dict[str, dict[str, str]]:
    return {name: {k: s.value for k, s in section.items()} for name, section in parse(text, "p.ini").items()}


def test_sections_keys_and_values_are_read_as_llama_cpp_reads_them() -> None:
    text = (
        "version = 1\r\n"
        "top = before any header\n"
        "; a comment\n"
        "   # an indented comment\n"
        "[*]\n"
        "c = 4096 ; the rest is a comment\n"
        "temp=0.7#no blank needed\n"
        'chat-template-kwargs = {"a": 1}   \n'
        "[ org/repo:q4_k_m]  ; a header with a comment\n"
        "ngl = 1\n"
        "[org/repo:x-q8_0]\n"
        "[*]\r"
        "again = 1\n"
    )
    assert values(text) == {
        "default": {"top": "before any header"},  # 'version' is reserved
        "*": {"again": "1"},  # a repeated header starts its section afresh
        "org/repo:Q4_K_M": {"ngl": "1"},  # the tag after ':' as llama.cpp's canonical_tag spells it
        "org/repo:Q8_0": {},
    }


def test_the_last_value_of_a_key_wins_and_each_setting_knows_its_line() -> None:
    [section] = parse("[m]\nc = 1\n\nc = 2\n", "p.ini").values()
    assert (section["c"].value, section["c"].line) == ("2", 4)


@pytest.mark.parametrize(
    ("text", "line"),
    [("[m]\n  c = 1\n", 2), ("[m\n", 1), ("c 1\n", 1), ("[m]\n1c = 2\n", 2), ("[]\n", 1)],
    ids=["indented-key", "unclosed", "no-equals", "key-starts-with-digit", "empty-section"],
)
def test_a_line_llama_cpp_cannot_parse_is_an_error_with_its_line(text: str, line: int) -> None:
    with pytest.raises(PresetError) as caught:
        parse(text, "repo/preset.ini")
    assert caught.value.message.startswith(f"repo/preset.ini:{line}: llama.cpp cannot read this line")
    assert caught.value.hint is not None


def test_a_model_gets_the_global_section_and_its_own_in_file_order() -> None:
    text = (
        "[*]\ntemp = 0.6\nc = 1\n"
        "[org/other-name]\ntop-k = 1\n"  # about a model by a name that is not this repo's: ignored
        "[mine]\nhf = org/repo:Q4_K_M\ntop-k = 20\n"
        "[org/repo]\nc = 2\n"
    )
    found = repo_preset(text, "p.ini", "org/repo", "Q4_K_M", ServerFlags())
    assert found.settings == (("temp", "0.6"), ("c", "2"), ("top-k", "20"))
    assert found.draft is None


def test_a_section_about_another_quant_of_the_same_repo_is_refused() -> None:
    with pytest.raises(
        PresetError, match=r"p.ini:2: \[q8\] hfr = org/repo:Q8_0 points at a model other than"
    ):
        repo_preset("[q8]\nhfr = org/repo:Q8_0\n", "p.ini", "org/repo", "Q4_K_M", ServerFlags())


def test_a_draft_repo_key_is_taken_out_of_the_settings_as_the_draft_to_lock() -> None:
    text = (
        "[*]\nhfd = org/old:Q8_0\ntemp = 1\n[org/repo]\nhf-repo-draft = org/draft:q4_k_m\nmd = sub/d.gguf\n"
    )
    found = repo_preset(text, "p.ini", "org/repo", "Q4_K_M", ServerFlags())
    assert found.settings == (("temp", "1"),)
    # The later key wins, as for any key; the tag is upper-cased, the file is model-draft's.
    assert found.draft == PresetDraft(repo="org/draft", tag="Q4_K_M", file="sub/d.gguf", where="p.ini:5")
    bare = repo_preset("[*]\nspec-draft-hf = org/draft\n", "p.ini", "org/repo", None, ServerFlags())
    assert bare.draft == PresetDraft(repo="org/draft", tag=None, file=None, where="p.ini:2")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[*]\nhfd = not-a-repo:Q8_0\n", "p.ini:2: hfd = not-a-repo:Q8_0 is not a Hugging Face repo"),
        ("[*]\nmodel-draft = /home/me/d.gguf\n", "p.ini:2: model-draft names model files"),
    ],
)
def test_a_draft_key_that_is_no_repo_or_a_draft_file_without_one_is_refused(text: str, message: str) -> None:
    with pytest.raises(PresetError, match=re.escape(message)):
        repo_preset(text, "p.ini", "org/repo", "Q4_K_M", ServerFlags())


@pytest.mark.parametrize(
    ("paths", "tag", "picked"),
    [
        # llama.cpp: the tag before "." or "-", anywhere in the path, in any case; first shards only.
        (
            ["a-q8_0.gguf", "a-Q4_K_M-00002-of-00002.gguf", "a-Q4_K_M-00001-of-00002.gguf"],
            "Q4_K_M",
            ["a-Q4_K_M-00001-of-00002.gguf"],
        ),
        # Without a tag: Q4_K_M, else Q8_0, else every model (never a projector or a draft head).
        (["a-F16.gguf", "a-Q8_0.gguf", "mmproj-Q4_K_M.gguf"], None, ["a-Q8_0.gguf"]),
        (["a-F16.gguf", "b-BF16.gguf", "mtp-a-F16.gguf"], None, ["a-F16.gguf", "b-BF16.gguf"]),
        (["a-F16.gguf"], "Q8_0", []),
    ],
)
def test_the_draft_model_is_picked_as_llama_cpp_find_best_model_picks(
    paths: list[str], tag: str | None, picked: list[str]
) -> None:
    assert best_model(paths, tag) == picked


def test_switches_are_given_or_negated_and_the_manifest_wins_in_the_command_line() -> None:
    flags = parse_help(
        "-c,    --ctx-size N                     context\n"
        "--jinja, --no-jinja                     jinja\n"
        "-fa,   --flash-attn [on|off|auto]       flash attention\n"
        "--mmproj-auto, --no-mmproj, --no-mmproj-auto\n"
    )
    preset = (("no-jinja", "true"), ("mmproj-auto", "0"), ("fa", "on"), ("c", "8192"), ("x-unknown", "1"))
    spec = ServerSpec(
        name="m",
        model=Path("/m.gguf"),
        mmproj=None,
        draft=None,
        runtime=Runtime(ctx_size=512, args=["--flash-attn", "off"]),
        chat_template_file=None,
        preset=preset,
    )
    assert preset_args(spec, flags) == [["--no-jinja"], ["--no-mmproj-auto"], ["--x-unknown", "1"]]
