"""Sidecars and presets that come with a model, end to end on the mirror: ``mmproj: auto`` and
``sidecar:`` picked as ``llama-server -hf`` picks them, the repo's ``preset.ini`` locked with role
``preset`` and merged below the manifest's runtime settings, and the bad inputs of each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import cli, home, write_manifest

from alex_models import api
from alex_models.emit.flags import parse_help
from alex_models.lock import loads
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

REPO, OTHER = "org/vision", "org/other"
MODEL, PROJ_F16, PROJ_Q8 = "vision-Q4_K_M.gguf", "mmproj-vision-F16.gguf", "mmproj-vision-Q8_0.gguf"
MTP_Q4, MTP_Q8 = "mtp-vision-Q4_K_M.gguf", "mtp-vision-Q8_0.gguf"
PRESET = """\
version = 1
; what the model's authors recommend
[*]
temp = 0.6
ctx-size = 4096

[org/vision:q4_k_m]
jinja = true   ; a switch
top-k = 20
c = 8192
"""
ENTRY = {"repo": REPO, "quant": "Q4_K_M", "mmproj": "auto", "sidecar": "mtp", "runtime": {"ctx_size": 1024}}
# The lines of llama-server --help (llama-cpp-python 0.3.36's llama.cpp) these tests' options are on.
HELP = """\
-c,    --ctx-size N                     size of the prompt context
--temp, --temperature N                 temperature (default: 0.80)
--top-k N                               top-k sampling (default: 40, 0 = disabled)
--jinja, --no-jinja                     whether to use jinja template engine for chat (default: enabled)
                                        (env: LLAMA_ARG_JINJA)
--spec-draft-model, -md, --model-draft FNAME
                                        draft model for speculative decoding (default: unused)
-hf,   -hfr, --hf-repo <user>/<model>[:quant]
"""
FLAGS = parse_help(HELP)


def publish(root: MirrorRoot, tmp_path: Path, preset: str | None = PRESET) -> str:
    """The vision repo: a model, two projectors, two MTP heads and (unless None) a preset.ini."""
    built = tmp_path / "built"
    built.mkdir(exist_ok=True)
    files: dict[str, Path | bytes] = {
        name: write_tiny_gguf(built / name, architecture=arch)
        for name, arch in (
            (MODEL, "llama"),
            (PROJ_F16, "clip"),
            (PROJ_Q8, "clip"),
            (MTP_Q4, "llama"),
            (MTP_Q8, "llama"),
        )
    }
    if preset is not None:
        files["preset.ini"] = preset.encode()
    return root.commit(REPO, files)


@pytest.fixture
def served(mirror: MirrorServer, monkeypatch: pytest.MonkeyPatch) -> MirrorServer:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    return mirror


def view(commit: str, path: str) -> str:
    return str(home() / "llama.cpp" / "hf" / REPO / commit / path)


def test_sidecars_and_preset_are_locked_with_roles_and_emitted_below_the_manifest(
    served: MirrorServer, mirror_root: MirrorRoot, project: Path, tmp_path: Path
) -> None:
    commit = publish(mirror_root, tmp_path)
    manifest = write_manifest(project, {"vision": ENTRY})
    api.lock(manifest)
    entry = loads((project / "models.lock").read_text(encoding="utf-8")).models["vision"]
    # llama.cpp: the projector whose bit depth is closest to the model's (8 to 4, not 16), the MTP
    # head whose name carries the quant tag; the preset at the repo's root.
    assert [(f.path, f.role) for f in entry.files] == [
        (PROJ_Q8, "mmproj"),
        (MTP_Q4, "mtp"),
        ("preset.ini", "preset"),
        (MODEL, "model"),
    ]
    assert entry.input.mmproj == "auto"
    assert entry.input.sidecar == "mtp"
    api.sync(manifest)

    argv = json.loads(api.emit("llama-server", manifest, as_json=True, flags=FLAGS).text)["argv"]
    # The preset's settings first and only where the manifest and lock set nothing: its ctx-size
    # (4096 in [*], 8192 as 'c' in the model's section) loses to runtime.ctx_size.
    assert argv == [
        "llama-server",
        "--temperature",  # llama.cpp's main spelling of 'temp': the last of the option's names
        "0.6",
        "--jinja",
        "--top-k",
        "20",
        "-m",
        view(commit, MODEL),
        "--alias",
        "vision",
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
        "-c",
        "1024",
        "--mmproj",
        view(commit, PROJ_Q8),
        "--spec-draft-model",
        view(commit, MTP_Q4),
        "--spec-type",
        "draft-mtp",
    ]
    router = api.emit("router-preset", manifest, flags=FLAGS).text
    assert router.split("[vision]\n")[1].splitlines() == [
        "temp = 0.6",
        "jinja = true",
        "top-k = 20",
        f"model = {view(commit, MODEL)}",
        "ctx-size = 1024",
        f"mmproj = {view(commit, PROJ_Q8)}",
        f"spec-draft-model = {view(commit, MTP_Q4)}",
        "spec-type = draft-mtp",
    ]


@pytest.mark.parametrize(
    ("preset", "words"),
    [
        pytest.param(
            "[*]\ntemp = 0.6\n  top-k = 20\n",
            ["preset.ini:3: llama.cpp cannot read this line of a preset: 'top-k = 20'"],
            id="indented-key",
        ),
        pytest.param("[*]\n[unclosed\n", ["preset.ini:2:", "'[unclosed'"], id="unclosed-section"),
        pytest.param(
            "[*]\ntemp = 0.6\n\n[another]\nhf = org/other-GGUF:Q8_0\n",
            [
                "preset.ini:5: [another] hf = org/other-GGUF:Q8_0 points at a model other than org/vision:Q4_K_M"
            ],
            id="another-repo",
        ),
        pytest.param(
            "[org/vision]\nmodel = /home/author/vision.gguf\n",
            ["preset.ini:2: [org/vision] model names model files"],
            id="a-file-key",
        ),
    ],
)
def test_a_preset_llama_cpp_cannot_read_or_that_names_other_files_is_refused_at_lock_with_file_and_line(
    served: MirrorServer,
    mirror_root: MirrorRoot,
    project: Path,
    tmp_path: Path,
    preset: str,
    words: list[str],
) -> None:
    publish(mirror_root, tmp_path, preset)
    write_manifest(project, {"vision": ENTRY})
    done = cli(project, "lock")
    assert done.returncode == 1, done.stderr
    # One line naming the repo's preset file and the line, then the hint; nothing locked.
    error, hint = done.stderr.splitlines()
    assert error.startswith("error: org/vision/preset.ini:"), error
    for word in words:
        assert word in error
    assert hint.startswith("hint: ")
    assert not (project / "models.lock").exists()


def test_the_cli_says_what_to_do_when_mmproj_auto_has_no_projector_or_two(
    served: MirrorServer, mirror_root: MirrorRoot, project: Path
) -> None:
    mirror_root.commit(OTHER, {"other-Q4_K_M.gguf": b"GGUF other\n"})
    write_manifest(project, {"other": {"repo": OTHER, "quant": "Q4_K_M", "mmproj": "auto"}})
    none = cli(project, "lock")
    assert none.returncode == 1, none.stderr
    assert "org/other at main" in none.stderr
    assert "has no projector (a .gguf with 'mmproj' in its path) beside other-Q4_K_M.gguf" in none.stderr
    assert "Traceback" not in none.stderr

    mirror_root.commit(OTHER, {"mmproj-BF16.gguf": b"GGUF p\n", "mmproj-F16.gguf": b"GGUF q\n"})
    two = cli(project, "lock")
    assert two.returncode == 1, two.stderr
    assert (
        "2 mmproj files fit other-Q4_K_M.gguf equally well: mmproj-BF16.gguf, mmproj-F16.gguf" in two.stderr
    )
    assert "mmproj: <path>" in two.stderr
    assert not (project / "models.lock").exists()


def test_sync_writes_no_emitted_file_when_a_repo_preset_is_malformed(
    served: MirrorServer, mirror_root: MirrorRoot, project: Path, tmp_path: Path
) -> None:
    publish(mirror_root, tmp_path, "[*]\nc = 1\n[broken\n")
    mirror_root.commit(OTHER, {"other-Q4_K_M.gguf": write_tiny_gguf(tmp_path / "other-Q4_K_M.gguf")})
    # The first file is about a model without a preset: it would be written before the second failed.
    targets = [
        {"format": "llama-server", "path": "other.sh", "model": "other"},
        {"format": "router-preset", "path": "r.ini"},
    ]
    manifest = project / "models.yaml"
    models = {"other": {"repo": OTHER, "quant": "Q4_K_M"}, "vision": ENTRY}
    document = {"version": 1, "models": models, "emit": targets}
    manifest.write_text(json.dumps(document), encoding="utf-8")

    done = cli(project, "sync")

    assert done.returncode == 1, done.stderr
    assert "preset.ini:3: llama.cpp cannot read this line of a preset: '[broken'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / "other.sh").exists()
    assert not (project / "r.ini").exists()
