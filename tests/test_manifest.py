"""``models.yaml``: what parses, what is refused (with file:line:col and a hint), and in-place edits."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from alex_models.errors import UserError
from alex_models.manifest import DEFAULT_REVISION, Manifest, ManifestError, ModelInput, parse_manifest
from alex_models.manifest_edit import EMPTY_MANIFEST, STARTER_MANIFEST, model_name_for, with_model

FILENAME = "proj/models.yaml"
SHA = "3f1c" + "0" * 60

# The example of DESIGN.md, with its elided "3f1c…" completed to a full SHA256.
DESIGN_EXAMPLE = f"""\
version: 1
defaults:
  revision: main
  runtime: {{ctx_size: 4096}}
models:
  qwen2.5-0.5b:                           # name: llama-server alias and app llm_model
    repo: Qwen/Qwen2.5-0.5B-Instruct-GGUF # Hugging Face repo id
    revision: main                        # branch, tag or full commit
    quant: Q4_K_M                         # or file: <path>, or files: [globs]
    mmproj: mmproj-f16.gguf               # optional projector, same repo
    draft: tiny-draft                     # optional other model, for speculative decoding
    runtime: {{ctx_size: 8192, n_gpu_layers: 99, args: ["--jinja"]}}
  tiny-draft:
    url: https://example.org/files/draft.gguf   # plain HTTPS source
    sha256: {SHA}                               # optional: pinned before lock
emit:
  - {{format: llama-swap, path: deploy/llama-swap.yaml}}
  - {{format: alex, path: ~/.alex/config.yaml}}
"""

# Lines 1-4; a test's own lines start at line 5, column 5, inside model "m".
HEAD = "version: 1\nmodels:\n  m:\n    repo: org/model\n"


def model(*lines: str) -> str:
    """A manifest whose model ``m`` (repo org/model) has ``lines`` added, each at 4 spaces."""
    return HEAD + "".join(f"    {line}\n" for line in lines)


def parse(text: str) -> Manifest:
    return parse_manifest(text, FILENAME)


def refused(text: str) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse(text)
    return caught.value


# --- what parses ---------------------------------------------------------------------------------


def test_design_example_parses() -> None:
    manifest = parse(DESIGN_EXAMPLE)
    assert list(manifest.models) == ["qwen2.5-0.5b", "tiny-draft"]
    qwen = manifest.models["qwen2.5-0.5b"]
    assert qwen.repo == "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    assert qwen.quant == "Q4_K_M"
    assert qwen.mmproj == "mmproj-f16.gguf"
    assert qwen.draft == "tiny-draft"
    assert qwen.runtime is not None
    assert (qwen.runtime.ctx_size, qwen.runtime.n_gpu_layers, qwen.runtime.args) == (8192, 99, ["--jinja"])
    assert manifest.defaults.runtime is not None
    assert manifest.defaults.runtime.ctx_size == 4096
    assert manifest.models["tiny-draft"].sha256 == SHA
    assert [(e.format, e.path) for e in manifest.emit] == [
        ("llama-swap", "deploy/llama-swap.yaml"),
        ("alex", "~/.alex/config.yaml"),
    ]


def test_design_example_with_elided_sha256_is_refused() -> None:
    error = refused(DESIGN_EXAMPLE.replace(SHA, "3f1c…"))
    assert error.message.startswith(f"{FILENAME}:15:5: models.tiny-draft.sha256: ")
    assert "not a SHA256" in error.message


@pytest.mark.parametrize("text", [STARTER_MANIFEST, EMPTY_MANIFEST], ids=["starter", "empty"])
def test_shipped_templates_parse(text: str) -> None:
    parse(text)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            model("quant: Q4_K_M", f"revision: {'0123456789abcdef' * 2}01234567"), id="commit-40-hex"
        ),
        pytest.param(model("quant: Q4_K_M", "revision: feature/x"), id="revision-with-slash"),
        pytest.param(model("quant: Q4_K_M", "revision: v1.0"), id="revision-tag"),
        pytest.param(model("file: sub/dir/m-Q4_K_M.gguf"), id="file-in-folder"),
        pytest.param(model("files: ['*.gguf', 'Q4_K_M/*']"), id="files-globs"),
        pytest.param(model("quant: q8_0", "mmproj: mmproj-*.gguf"), id="mmproj-glob"),
        pytest.param(
            HEAD.replace("repo: org/model", "url: http://127.0.0.1:8000/m.gguf"), id="http-loopback"
        ),
        pytest.param(HEAD.replace("repo: org/model", "url: http://localhost/m.gguf"), id="http-localhost"),
        pytest.param(
            HEAD.replace("repo: org/model", f"url: https://x.org/m.gguf\n    sha256: {SHA}"), id="url-sha"
        ),
        pytest.param("version: 1\n", id="no-models"),
        pytest.param(
            "version: 1\nmodels:\n  # m: {repo: a/b, quant: Q4_K_M}\n", id="models-all-commented-out"
        ),
    ],
)
def test_valid_manifests_parse(text: str) -> None:
    parse(text)


# --- what is refused -------------------------------------------------------------------------------

# fmt: off
REFUSED = [
    # id, text, location, words of the message, hint (None: no hint)
    ("unknown-key-close-match", model("qaunt: Q4_K_M"), "5:5", ["unknown key 'qaunt'", "models.m"], "did you mean 'quant'?"),
    ("unknown-top-level-key", "version: 1\nmodels: {}\nextras: 1\n", "3:1", ["unknown key 'extras'"], "known keys here: version, defaults, models, emit, store, remotes"),
    ("unknown-top-level-close", "version: 1\nmodel: {}\n", "2:1", ["unknown key 'model'"], "did you mean 'models'?"),
    ("unknown-runtime-key", model("quant: Q", "runtime: {ctx_siz: 1}"), "6:15", ["unknown key 'ctx_siz'", "models.m.runtime"], "did you mean 'ctx_size'?"),
    ("ctx-size-string", model("quant: Q", "runtime: {ctx_size: '4096'}"), "6:15", ["models.m.runtime.ctx_size", "valid integer", "'4096'"], None),
    ("ctx-size-zero", model("quant: Q", "runtime: {ctx_size: 0}"), "6:15", ["models.m.runtime.ctx_size", "greater than 0"], None),
    ("gpu-layers-negative", model("quant: Q", "runtime: {n_gpu_layers: -1}"), "6:15", ["n_gpu_layers"], None),
    ("args-not-a-list", model("quant: Q", "runtime: {args: --jinja}"), "6:15", ["models.m.runtime.args", "valid list"], None),
    ("quant-int", model("quant: 4"), "5:5", ["models.m.quant", "valid string", "got 4"], None),
    ("version-string", "version: '1'\nmodels: {}\n", "1:1", ["version: must be the whole number 1, got '1'"], None),
    ("version-true", "version: true\nmodels: {}\n", "1:1", ["version: must be the whole number 1, got True"], None),
    ("version-float", "version: 1.0\nmodels: {}\n", "1:1", ["version: must be the whole number 1, got 1.0"], None),
    ("repo-no-slash", HEAD.replace("org/model", "Org"), "4:5", ["models.m.repo", "'Org' is not a Hugging Face repo id"], None),
    ("repo-three-parts", HEAD.replace("org/model", "a/b/c"), "4:5", ["not a Hugging Face repo id"], None),
    ("repo-double-dash", HEAD.replace("org/model", "org/a--b"), "4:5", ["not a Hugging Face repo id"], None),
    ("revision-space", model("quant: Q", "revision: 'a b'"), "6:5", ["models.m.revision", "'a b'", "neither a branch or tag"], None),
    ("revision-dotdot", model("quant: Q", "revision: a..b"), "6:5", ["'a..b'", "neither a branch or tag"], None),
    ("revision-leading-dash", model("quant: Q", "revision: -x"), "6:5", ["'-x'", "neither a branch or tag"], None),
    ("revision-lock-suffix", model("quant: Q", "revision: x.lock"), "6:5", ["'x.lock'", "neither a branch or tag"], None),
    ("revision-short-hex-uppercase", model("quant: Q", "revision: 'A b'"), "6:5", ["neither a branch or tag"], None),
    ("no-source", HEAD, "3:3", ["models.m", "exactly one of 'file', 'files', 'quant', 'url' or 'oci'"], None),
    ("two-sources", model("quant: Q", "file: x.gguf"), "3:3", ["exactly one of", "(it has file and quant)"], None),
    ("three-sources", model("quant: Q", "file: x.gguf", "files: [y]"), "3:3", ["(it has file and files and quant)"], None),
    ("url-with-repo", "version: 1\nmodels:\n  m: {url: 'https://x.org/m.gguf', repo: a/b}\n", "3:3", ["models.m", "a 'url' model takes no 'repo'"], None),
    ("url-with-revision-mmproj", "version: 1\nmodels:\n  m: {url: 'https://x.org/m.gguf', revision: v1, mmproj: p.gguf}\n", "3:3", ["takes no 'revision', 'mmproj'"], None),
    ("url-with-lora", "version: 1\nmodels:\n  m: {url: 'https://x.org/m.gguf', lora: [a.gguf]}\n", "3:3", ["a 'url' model takes no 'lora'"], None),
    ("lora-empty", "version: 1\nmodels:\n  m: {repo: a/b, quant: Q, lora: []}\n", "3:3", ["'lora' needs at least one path or glob"], None),
    ("sidecar-unknown-kind", "version: 1\nmodels:\n  m: {repo: a/b, quant: Q, sidecar: medusa}\n", "3:28", ["models.m.sidecar", "'mtp'"], None),
    ("sidecar-file-alone", "version: 1\nmodels:\n  m: {repo: a/b, quant: Q, sidecar_file: mtp-x.gguf}\n", "3:3", ["'sidecar_file' names the file of a 'sidecar'"], None),
    ("sidecar-and-draft", "version: 1\nmodels:\n  m: {repo: a/b, quant: Q, sidecar: mtp, draft: d}\n  d: {repo: a/c, quant: Q}\n", "3:3", ["'draft' (another model) or 'sidecar', not both"], None),
    ("url-with-sidecar", "version: 1\nmodels:\n  m: {url: 'https://x.org/m.gguf', sidecar: mtp}\n", "3:3", ["a 'url' model takes no 'sidecar'"], None),
    ("lora-escaping", "version: 1\nmodels:\n  m: {repo: a/b, quant: Q, lora: [../x.gguf]}\n", "3:35", ["models.m.lora[0]", "'..' segment"], None),
    ("sha256-without-url", model("quant: Q", f"sha256: {SHA}"), "3:3", ["'sha256' pins a 'url' source"], None),
    ("sha256-not-hex", HEAD.replace("repo: org/model", "url: https://x.org/m.gguf\n    sha256: xyz"), "5:5", ["models.m.sha256", "not a SHA256"], None),
    ("repo-missing", "version: 1\nmodels:\n  m: {quant: Q}\n", "3:3", ["'repo' is missing"], None),
    ("url-http", HEAD.replace("repo: org/model", "url: http://example.org/m.gguf"), "4:5", ["models.m.url", "is not an https:// URL"], None),
    ("url-http-loopback-lookalike", HEAD.replace("repo: org/model", "url: http://example.org/127.0.0.1"), "4:5", ["not an https:// URL"], None),
    ("url-ftp", HEAD.replace("repo: org/model", "url: ftp://x.org/m.gguf"), "4:5", ["not an https:// URL"], None),
    ("draft-missing-close", model("quant: Q", "draft: mm") + "  mmm:\n    repo: a/b\n    quant: Q\n", "6:5", ["models.m.draft", "'mm' is not a model here"], "did you mean 'mmm'?"),
    ("draft-missing-far", model("quant: Q", "draft: other"), "6:5", ["'other' is not a model here"], "add that model under 'models:'"),
    ("draft-itself", model("quant: Q", "draft: m"), "6:5", ["model 'm' cannot be its own draft"], None),
    ("file-absolute", model("file: /etc/passwd"), "5:5", ["models.m.file", "not a relative path", "absolute"], None),
    ("file-dotdot", model("file: a/../../b.gguf"), "5:5", ["models.m.file", "'..' segment"], None),
    ("file-dot", model("file: ./b.gguf"), "5:5", ["'.' segment"], None),
    ("file-backslash", model("file: 'a\\b.gguf'"), "5:5", ["models.m.file", "backslash"], None),
    ("file-nul", model('file: "a\\x00b"'), "5:5", ["models.m.file", "NUL"], None),
    ("file-empty-segment", model("file: a//b"), "5:5", ["models.m.file", "empty segment"], None),
    ("file-empty", model("file: ''"), "5:5", ["models.m.file", "empty"], None),
    ("file-drive-letter", model("file: 'C:x.gguf'"), "5:5", ["drive letter"], None),
    ("files-absolute", model("files: [ok.gguf, /abs.gguf]"), "5:22", ["models.m.files[1]", "absolute"], None),
    ("files-dotdot", model("files: ['../x']"), "5:13", ["models.m.files[0]", "'..' segment"], None),
    ("files-empty-list", model("files: []"), "3:3", ["'files' needs at least one path or glob"], None),
    ("mmproj-dotdot", model("quant: Q", "mmproj: ../x.gguf"), "6:5", ["models.m.mmproj", "'..' segment"], None),
    ("mmproj-absolute", model("quant: Q", "mmproj: /x.gguf"), "6:5", ["models.m.mmproj", "absolute"], None),
    ("model-name-invalid", "version: 1\nmodels:\n  'bad name': {repo: a/b, quant: Q}\n", "3:3", ["'bad name' is not a model name"], None),
    ("model-null", "version: 1\nmodels:\n  m:\n", "3:3", ["models.m", "valid dictionary"], None),
    ("models-list", "version: 1\nmodels: [a, b]\n", "2:1", ["models", "valid dictionary", "got a list"], None),
    ("emit-format-unknown", "version: 1\nemit: [{format: vllm, path: x}]\n", "2:9", ["emit[0].format", "'vllm'"], None),
    ("defaults-revision-bad", "version: 1\ndefaults: {revision: 'a..b'}\n", "2:12", ["defaults.revision", "neither a branch or tag"], None),
    ("missing-version", "models: {}\n", "1:1", ["missing key 'version'"], "start the file with 'version: 1'"),
    ("version-2", "version: 2\nmodels: {}\n", "1:1", ["version", "Input should be 1", "got 2"], None),
    ("invalid-yaml", "version: 1\nmodels: {\n", "3:1", ["expected"], "fix the YAML syntax"),
    ("invalid-yaml-tab", "version: 1\nmodels:\n\tm: 1\n", "3:1", [], "fix the YAML syntax"),
    ("duplicate-key", "version: 1\nmodels: {}\nversion: 1\n", "3:1", ["duplicate key", "version"], "fix the YAML syntax"),
    ("duplicate-model", "version: 1\nmodels:\n  m: {repo: a/b, quant: Q}\n  m: {repo: a/b, quant: Q}\n", "4:3", ["duplicate key", "m"], "fix the YAML syntax"),
    ("empty-file", "", "1:1", ["expected a mapping with 'version' and 'models'"], None),
    ("only-comments", "# nothing here\n", "1:1", ["expected a mapping"], None),
    ("top-level-list", "- version: 1\n- models: {}\n", "1:1", ["expected a mapping"], None),
    ("top-level-scalar", "version 1\n", "1:1", ["expected a mapping"], None),
    ("mapping-as-key", "version: 1\nmodels:\n  ? {a: 1}\n  : {repo: a/b, quant: Q}\n", "2:1", ["valid string"], None),
    ("omap-models", "version: 1\nmodels: !!omap [m: 1]\n", "2:1", ["models.m", "valid dictionary"], None),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "where", "words", "hint"), [pytest.param(*case[1:], id=case[0]) for case in REFUSED]
)
def test_bad_manifest_is_refused_with_location_and_reason(
    text: str, where: str, words: list[str], hint: str | None
) -> None:
    error = refused(text)
    assert error.message.startswith(f"{FILENAME}:{where}: "), error.message
    for word in words:
        assert word in error.message
    assert error.hint == hint
    assert error.exit_code == 1
    assert isinstance(error, UserError)


@pytest.mark.parametrize(
    "text",
    [
        "version: !!int x\n",
        "version: !!bool x\n",
        "version: 1\nmodels: !!set\n",
        "!!omap",
        "a: " + "[" * 1000,
    ],
    ids=["bad-int-tag", "bad-bool-tag", "set-tag-on-scalar", "omap-tag-alone", "nested-too-deep"],
)
def test_yaml_the_parser_chokes_on_is_a_manifest_error(text: str) -> None:
    # ruamel raises ValueError, KeyError, AttributeError or RecursionError for these, not YAMLError.
    error = refused(text)
    assert error.message.startswith(f"{FILENAME}: invalid YAML: ")
    assert error.hint == "fix the YAML syntax"


def test_every_problem_is_shown_on_its_own_line_with_its_location_and_hint() -> None:
    error = refused(
        "version: 1\nmodels:\n  m: {repo: a/b, quant: Q, bad1: 1}\n  n:\n    repo: a/c\n    qaunt: Q\n"
    )
    known = "known keys here: repo, revision, file, files, quant, url, sha256, oci, mmproj, lora, draft, sidecar, sidecar_file, preset, runtime"
    assert error.message.splitlines() == [
        f"{FILENAME}:3:28: unknown key 'bad1' in models.m ({known})",
        f"{FILENAME}:6:5: unknown key 'qaunt' in models.n (did you mean 'quant'?)",
    ]
    assert error.hint is None


def test_problems_past_the_tenth_are_counted() -> None:
    keys = ", ".join(f"x{n}: 1" for n in range(12))
    error = refused(f"version: 1\nmodels:\n  m: {{repo: a/b, quant: Q, {keys}}}\n")
    lines = error.message.splitlines()
    assert len(lines) == 11
    assert all(line.startswith(f"{FILENAME}:3:") for line in lines[:10])
    assert [line.split("'")[1] for line in lines[:10]] == [f"x{n}" for n in range(10)]
    assert lines[10] == f"{FILENAME}: and 2 more problems"


# --- lock input normalization ---------------------------------------------------------------------


def test_lock_input_uppercases_quant() -> None:
    assert parse(model("quant: q4_k_m")).inputs()["m"].quant == "Q4_K_M"


def test_lock_input_applies_default_revision() -> None:
    assert parse(model("quant: Q")).inputs()["m"].revision == DEFAULT_REVISION == "main"
    text = "version: 1\ndefaults: {revision: v2}\nmodels:\n  a: {repo: o/a, quant: Q}\n  b: {repo: o/b, quant: Q, revision: v3}\n"
    inputs = parse(text).inputs()
    assert (inputs["a"].revision, inputs["b"].revision) == ("v2", "v3")


def test_lock_input_sorts_and_deduplicates_files() -> None:
    assert parse(model("files: [b.gguf, a.gguf, b.gguf, '*.json']")).inputs()["m"].files == [
        "*.json",
        "a.gguf",
        "b.gguf",
    ]


def test_lock_input_leaves_out_runtime_and_draft() -> None:
    plain = "version: 1\nmodels:\n  m: {repo: o/m, quant: Q}\n  d: {repo: o/d, quant: Q}\n"
    dressed = (
        "version: 1\ndefaults: {runtime: {ctx_size: 1}}\nmodels:\n"
        "  m: {repo: o/m, quant: Q, draft: d, runtime: {ctx_size: 8192, args: [--jinja]}}\n"
        "  d: {repo: o/d, quant: Q}\n"
    )
    assert parse(plain).inputs() == parse(dressed).inputs()
    assert parse(plain).inputs()["m"] == ModelInput(repo="o/m", revision="main", quant="Q")


def test_lock_input_of_url_model_keeps_url_and_lowercased_sha256() -> None:
    text = HEAD.replace("repo: org/model", f"url: https://x.org/m.gguf\n    sha256: {SHA.upper()}")
    assert parse(text).inputs()["m"] == ModelInput(url="https://x.org/m.gguf", sha256=SHA)


# --- with_model: editing the user's file ----------------------------------------------------------

USER_FILE = """\
# our models
version: 1
defaults:
  revision: main   # default rev
models:
  # the first
  zed:
    repo: a/b      # repo comment
    quant: Q8_0
emit: []
"""


def test_with_model_keeps_comments_and_order() -> None:
    out = with_model(USER_FILE, "alpha", {"repo": "Qwen/X-GGUF", "quant": "Q4_K_M"}, FILENAME)
    assert out == (
        "# our models\n"
        "version: 1\n"
        "defaults:\n"
        "  revision: main   # default rev\n"
        "models:\n"
        "  # the first\n"
        "  zed:\n"
        "    repo: a/b      # repo comment\n"
        "    quant: Q8_0\n"
        "  alpha:\n"
        "    repo: Qwen/X-GGUF\n"
        "    quant: Q4_K_M\n"
        "emit: []\n"
    )
    assert list(parse(out).models) == ["zed", "alpha"]


def test_with_model_adds_after_the_last_entry_before_the_comments_that_follow_it() -> None:
    text = (
        "version: 1\n"
        "models:\n"
        "  zed:\n"
        "    repo: a/b\n"
        "    quant: Q8_0   # the big one\n"
        "    # runtime: {ctx_size: 8192}\n"
        "  # old:\n"
        "  #   repo: a/old\n"
        "\n"
        "# emit:\n"
        "#   - {format: llama-swap, path: x.yaml}\n"
    )
    out = with_model(text, "alpha", {"repo": "o/x", "files": ["a.gguf", "b.gguf"]}, FILENAME)
    assert out == (
        "version: 1\n"
        "models:\n"
        "  zed:\n"
        "    repo: a/b\n"
        "    quant: Q8_0   # the big one\n"
        "    # runtime: {ctx_size: 8192}\n"
        "  alpha:\n"
        "    repo: o/x\n"
        "    files:\n"
        "    - a.gguf\n"
        "    - b.gguf\n"
        "  # old:\n"
        "  #   repo: a/old\n"
        "\n"
        "# emit:\n"
        "#   - {format: llama-swap, path: x.yaml}\n"
    )


def test_with_model_refuses_a_duplicate_name() -> None:
    with pytest.raises(UserError) as caught:
        with_model(USER_FILE, "zed", {"repo": "o/x", "quant": "Q4_K_M"}, FILENAME)
    assert caught.value.message == f"{FILENAME} already has a model named 'zed'"
    assert caught.value.hint is not None
    assert "--name" in caught.value.hint


def test_with_model_works_on_empty_flow_models() -> None:
    out = with_model(EMPTY_MANIFEST, "alpha", {"repo": "o/x", "files": ["a.gguf", "b.gguf"]}, FILENAME)
    assert out == (
        "# models.yaml: the local LLM weights this project runs, for alex-models.\n"
        "version: 1\n"
        "models:\n"
        "  alpha:\n"
        "    repo: o/x\n"
        "    files:\n"
        "    - a.gguf\n"
        "    - b.gguf\n"
    )


def test_with_model_adds_models_key_when_absent() -> None:
    out = with_model("version: 1\n", "alpha", {"url": "https://x.org/a.gguf"}, FILENAME)
    assert parse(out).inputs() == {"alpha": ModelInput(url="https://x.org/a.gguf")}


def test_with_model_refuses_an_invalid_entry() -> None:
    with pytest.raises(ManifestError, match=r"'\.\.' segment"):
        with_model(USER_FILE, "x", {"repo": "o/x", "file": "../x.gguf"}, FILENAME)


def test_with_model_refuses_to_edit_an_invalid_file() -> None:
    with pytest.raises(ManifestError, match="unknown key 'qaunt'"):
        with_model(model("qaunt: Q"), "x", {"repo": "o/x", "quant": "Q"}, FILENAME)


@pytest.mark.parametrize(
    ("repo", "name"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct"),
        ("TheBloke/Llama-2-7B-gguf", "llama-2-7b"),
        ("org/Foo_Bar+Baz_GGUF", "foo_bar-baz"),
        ("org/plain", "plain"),
        ("org/___", "model"),
    ],
    ids=["suffix-GGUF", "suffix-gguf", "odd-characters", "no-suffix", "nothing-left"],
)
def test_model_name_for_derives_a_valid_name(repo: str, name: str) -> None:
    assert model_name_for(repo) == name
    parse(f"version: 1\nmodels:\n  {name}: {{repo: org/repo, quant: Q}}\n")


# --- any document: parses or ManifestError, never another exception ----------------------------------

KEYS = st.sampled_from(
    [
        "version", "defaults", "models", "emit", "revision", "runtime", "repo", "file", "files", "quant",
        "url", "sha256", "mmproj", "draft", "ctx_size", "n_gpu_layers", "args", "format", "path", "m", "qaunt",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.sampled_from(
        [
            "a/b", "Q4_K_M", "q8_0", "main", "a..b", "-x", "x.lock", "../x", "/abs", "a//b", "a\\b", "a\x00b",
            "https://x.org/m.gguf", "http://x.org/m.gguf", "http://127.0.0.1/m", SHA, "llama-swap", "m", "",
        ]
    ),
    st.text(max_size=12),
)  # fmt: skip
DOCUMENTS = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=6), st.integers(-3, 3)), children, max_size=5),
    ),
    max_leaves=25,
)
MANIFESTS = st.fixed_dictionaries(
    {"version": st.one_of(st.just(1), SCALARS)},
    optional={
        "defaults": DOCUMENTS,
        "models": st.dictionaries(
            st.one_of(st.sampled_from(["m", "d", "x y"]), st.text(max_size=5)), DOCUMENTS
        ),
        "emit": DOCUMENTS,
    },
)


def _dump(document: Any, flow: bool) -> str:
    yaml = YAML(typ="safe")
    yaml.default_flow_style = flow
    out = io.StringIO()
    yaml.dump(document, out)
    return out.getvalue()


def _parses_or_refuses(text: str) -> None:
    try:
        parse(text)
    except ManifestError as error:
        message = error.message
    else:
        return
    assert message.startswith(f"{FILENAME}:"), message


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=st.one_of(MANIFESTS, DOCUMENTS), flow=st.booleans())
def test_generated_documents_parse_or_raise_manifest_error(document: Any, flow: bool) -> None:
    _parses_or_refuses(_dump(document, flow))


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.text(alphabet="{}[]:,-?!&*<#|>'\"%@`\\\n\t abm1.", max_size=60),
        st.lists(
            st.sampled_from([*HEAD.splitlines(keepends=True), "  ? ", ": ", "    quant: Q\n", "!!omap "])
        ).map("".join),
    )
)
def test_random_text_parses_or_raises_manifest_error(text: str) -> None:
    _parses_or_refuses(text)
