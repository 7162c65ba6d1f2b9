"""Every module imports on its own, in a fresh interpreter: no import works only because another
module happened to be imported first (a cycle resolved by luck). The layer contracts themselves
are checked by ``lint-imports`` in .ci/run (pyproject.toml's [tool.importlinter])."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import alex_models

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(alex_models.__path__, prefix="alex_models.")
    if not name.endswith("__main__")  # running them is what they are for: they start the CLI
)


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-c", f"import {name}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in MODULES
    }
    failures = {}
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        if process.returncode != 0:
            failures[name] = stderr.strip().splitlines()[-1]
    assert failures == {}


def test_the_module_list_is_complete() -> None:
    assert {"alex_models.cli", "alex_models.api._sync", "alex_models.mirror.routes"} <= set(MODULES)
