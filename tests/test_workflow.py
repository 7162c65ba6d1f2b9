"""The GitHub Actions workflow, which cannot run here, checked against what can: it parses, it runs on
the three platforms, it runs the README's test command and the runtime .ci/run builds, and on Linux
it allows no skipped test, as .ci/run does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def workflow() -> dict[str, Any]:
    loaded = YAML(typ="safe").load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def runners(job: dict[str, Any]) -> set[str]:
    """The runner labels a job runs on, its matrix's ``os`` expanded."""
    runs_on = job["runs-on"]
    if runs_on == "${{ matrix.os }}":
        return set(job["strategy"]["matrix"]["os"])
    return {runs_on}


def run_steps(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_the_workflow_runs_on_linux_macos_and_windows_and_the_runtime_on_linux_and_macos() -> None:
    jobs = workflow()["jobs"]

    assert set().union(*(runners(job) for job in jobs.values())) == {
        "ubuntu-latest",
        "macos-latest",
        "windows-latest",
    }
    assert runners(jobs["test"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    assert runners(jobs["runtime"]) == {"ubuntu-latest", "macos-latest"}
    assert ".venv/bin/pytest -m runtime" in run_steps(jobs["runtime"])


def test_the_workflow_runs_the_readmes_test_command() -> None:
    setup = ROOT.joinpath("README.md").read_text(encoding="utf-8").split("## Set up", 1)[1]
    commands = re.findall(r"^```sh\n(.*?)\n```", setup, re.MULTILINE | re.DOTALL)

    assert commands[1] in run_steps(workflow()["jobs"]["test"])


def test_the_workflow_builds_the_llama_cpp_version_ci_run_builds() -> None:
    default = re.compile(r"LLAMA_CPP_PYTHON_VERSION:-([0-9.]+)")
    ci_run = default.findall(ROOT.joinpath(".ci", "run").read_text(encoding="utf-8"))
    script = default.findall(ROOT.joinpath(".ci", "llama-server.sh").read_text(encoding="utf-8"))

    assert [workflow()["env"]["LLAMA_CPP_PYTHON_VERSION"]] == ci_run == script


def test_the_linux_runs_allow_no_skip_as_ci_run_does() -> None:
    jobs = workflow()["jobs"]
    linux = [
        step["run"]
        for name in ("test", "slow")
        for step in jobs[name]["steps"]
        if step.get("if") == "runner.os == 'Linux'"
    ]

    assert len(linux) == 2
    assert all("ALEX_MODELS_NO_SKIPS=1 .venv/bin/pytest" in run for run in linux), linux
    assert (
        "export ALEX_MODELS_NO_SKIPS=1"
        in ROOT.joinpath(".ci", "run").read_text(encoding="utf-8").splitlines()
    )
