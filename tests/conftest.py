"""Fixtures every test shares: an isolated home, and the mirror server on a free loopback port."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

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

_ENV_DIRS = {
    "HOME": "home",
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
