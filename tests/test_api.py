"""The public Python API: what ``alex_models.api`` exports, and that each export explains itself."""

from __future__ import annotations

import ast
import importlib
import inspect

import alex_models
from alex_models import api


def test_all_is_complete_and_sorted() -> None:
    """Every public class and function the package holds is in ``__all__`` (as httpx checks its
    own), nothing else is, and the list is sorted so a new name has one place to go. Names load on
    first use (PEP 562), so each is asked for first."""
    for name in api.__all__:
        getattr(api, name)
    public = {
        name
        for name, value in vars(api).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
    }
    assert set(api.__all__) == public
    assert api.__all__ == sorted(api.__all__)


def test_type_checkers_see_the_names_that_load_from_the_same_modules() -> None:
    """The ``TYPE_CHECKING`` imports (what mypy and editors read) and what ``__getattr__`` loads
    at run time are the same names, each from the same module."""
    tree = ast.parse(inspect.getsource(api))
    [block] = [
        node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    declared = {
        alias.asname or alias.name: (str(node.module), alias.name)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert sorted(declared) == api.__all__
    for name, (module, original) in declared.items():
        assert getattr(api, name) is getattr(importlib.import_module(module), original), name


def test_submodules_do_not_shadow_the_functions() -> None:
    """The modules behind the API are private, so ``alex_models.api.sync`` is the function."""
    for name in ("sync", "status", "emit", "probe", "pull", "gc", "lock", "demo"):
        assert inspect.isfunction(getattr(api, name)), name


def _documented(name: str) -> bool:
    doc = getattr(api, name).__doc__ or ""
    # A dataclass without a docstring gets its signature as one: "SyncResult(lock_path: Path, …)".
    return bool(doc.strip()) and not doc.startswith(f"{name}(")


def test_every_export_has_a_docstring() -> None:
    assert [name for name in api.__all__ if not _documented(name)] == []


def test_the_package_exports_its_errors_and_version() -> None:
    assert alex_models.__all__ == sorted(alex_models.__all__)
    for name in alex_models.__all__:
        assert hasattr(alex_models, name), name
