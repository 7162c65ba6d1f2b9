"""Fixtures every test shares: an isolated home, and the mirror server on a free loopback port; and
the skips of the platform markers (pyproject.toml), which ALEX_MODELS_NO_SKIPS=1 turns into failures."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

# huggingface_hub reads HF_HOME, HF_ENDPOINT and the token path once, at import. Point them at a
# throwaway folder before any test imports it, so no test can read a developer's real cache or token.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="alex-models-tests-"))
for _name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
    os.environ.pop(_name, None)
os.environ["HF_HOME"] = str(_SESSION_HOME / "hf-home")
# In-process, the endpoint huggingface_hub captures at import is a closed loopback port: a request
# that forgets to name the mirror (or the client's own agent-harness lookup) fails fast here
# instead of reaching huggingface.co. Tests pass the mirror's URL explicitly.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HUB_DISABLE_UPDATE_CHECK"] = "1"

import httpx2  # noqa: E402

from alex_models.fetch import new_client  # noqa: E402
from alex_models.mirror import MirrorRoot, MirrorServer  # noqa: E402
from alex_models.store import Store  # noqa: E402


def _can_symlink() -> bool:
    """Whether this user may create a symlink (Windows refuses without Developer Mode or the
    privilege; everywhere else, yes)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            (Path(folder) / "link").symlink_to(Path(folder) / "target")
        except OSError:
            return False
    return True


# What each platform marker needs, and whether this machine has it.
_PLATFORM_MARKERS = {
    "posix": ("Windows has none", os.name != "nt"),
    "linux": ("only Linux has it", sys.platform == "linux"),
    "symlinks": (
        "this user may not create symlinks (Windows: Developer Mode or the privilege)",
        _can_symlink(),
    ),
}
NO_SKIPS = os.environ.get("ALEX_MODELS_NO_SKIPS") == "1"
"""Set by .ci/run on Linux, where every test must run: a skip fails there."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip a test marked ``posix``, ``linux`` or ``symlinks`` where the facility its marker
    names is missing, saying which."""
    for item in items:
        for name, (why_missing, present) in _PLATFORM_MARKERS.items():
            marker = item.get_closest_marker(name)
            if marker is None:
                continue
            if len(marker.args) != 1:
                raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{name} takes what the test needs")
            if not present:
                item.add_marker(pytest.mark.skip(reason=f"needs {marker.args[0]}: {why_missing}"))


def _fail_if_skipped(report: pytest.TestReport | pytest.CollectReport) -> None:
    if NO_SKIPS and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"{reason}, and ALEX_MODELS_NO_SKIPS=1 allows no skip"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport() -> Generator[None, Any, None]:
    """With ALEX_MODELS_NO_SKIPS=1, a skipped test is reported as failed, with its reason."""
    outcome = yield
    _fail_if_skipped(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report() -> Generator[None, Any, None]:
    """The same for a module or class skipped as a whole."""
    outcome = yield
    _fail_if_skipped(outcome.get_result())


_ENV_DIRS = {
    "HOME": "home",
    "USERPROFILE": "home",  # Windows's HOME: Path.home() and ~ read it there
    "HF_HOME": "hf-home",
    "HF_HUB_CACHE": "hf-home/hub",
    "ALEX_MODELS_HOME": "alex-models",
    "XDG_CACHE_HOME": "xdg-cache",
    "XDG_CONFIG_HOME": "xdg-config",
}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every state directory (store, HF_HOME, config) under tmp_path; no token in the environment."""
    home = tmp_path / "env"
    for name, sub in _ENV_DIRS.items():
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(home / sub))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """An empty project folder (apart from the isolated home and the mirror root in tmp_path)."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def mirror_root(tmp_path: Path) -> MirrorRoot:
    """An empty mirror root; create repos, commits, branches and tags with its methods."""
    return MirrorRoot(tmp_path / "mirror-root")


@pytest.fixture
def mirror(mirror_root: MirrorRoot) -> Iterator[MirrorServer]:
    """The mirror server over ``mirror_root``, on free loopback ports, for the test's duration."""
    with MirrorServer(mirror_root.root, host="127.0.0.1") as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    """The HTTP client alex-models downloads with (keep-alive, redirects followed)."""
    with new_client() as http:
        yield http


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """An empty store of this test's own."""
    return Store(tmp_path / "store").init()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a free loopback port, shared by a test module's tests (each uses its own
    bucket). Imported here, when asked for: most tests never start it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new empty bucket on moto, the environment pointed at it as a host's would be."""
    from s3kit import SECRET, use_endpoint

    use_endpoint(monkeypatch, moto_endpoint, "AKIDEXAMPLE", SECRET)
    name = f"models-{uuid.uuid4().hex[:12]}"
    httpx2.put(f"{moto_endpoint}/{name}", trust_env=False).raise_for_status()
    return name


@pytest.fixture(scope="module")
def synced_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A store synced from a mirror of its own (``storekit``), shared by a test module's tests that
    only read it: syncing costs half a second."""
    from storekit import sync_project

    folder = tmp_path_factory.mktemp("synced-store")
    root = MirrorRoot(folder / "root")
    with MirrorServer(root.root) as upstream:
        yield sync_project(root, upstream.url, folder, folder / "store")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A registry of its own for a test module (Debian's docker-registry, ``registrykit``), no auth."""
    from registrykit import RegistryServer

    server = RegistryServer(tmp_path_factory.mktemp("registry")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A token service (``tokenkit``) signing the JWTs ``tokened`` trusts."""
    from tokenkit import TokenService

    service = TokenService(tmp_path_factory.mktemp("tokens")).start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def tokened(tmp_path_factory: pytest.TempPathFactory, tokens: Any) -> Iterator[Any]:
    """A registry with ``auth: token``, trusting ``tokens``."""
    from registrykit import RegistryServer

    server = RegistryServer(tmp_path_factory.mktemp("tokened"), auth=tokens.auth_config()).start()
    try:
        yield server
    finally:
        server.stop()
