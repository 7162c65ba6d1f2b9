"""``probe`` against llama-server stand-ins on loopback (``fake_llama_server``): every locked model
looked for at its own address, a router asked per model, the exit code saying whether all are right.

The project is a manifest and a lock written here (probe reads no more), with real files at the
view paths the servers say they loaded. The ``runtime`` tests probe the real llama-server.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fake_llama_server import FakeLlamaServer
from helpers import blob, cli, free_port, home, write_manifest

from alex_models import api
from alex_models._platform import remove
from alex_models.lock import Lock, LockedFile, LockedModel, dumps
from alex_models.manifest import ModelInput

COMMIT = "0123456789abcdef0123456789abcdef01234567"
NAMES = ("alpha", "beta")


def locked_file(name: str) -> str:
    return f"{name}-Q4_K_M.gguf"


def view(name: str) -> Path:
    """Where the store links ``name``'s locked file (written here, so the server can name it)."""
    return home() / "llama.cpp" / "hf" / "org" / name / COMMIT / locked_file(name)


def locked_project(folder: Path, ports: dict[str, int]) -> Path:
    """models.yaml serving each model on its port, and the models.lock pinning each, views on disk."""
    manifest = write_manifest(
        folder,
        {
            name: {"repo": f"org/{name}", "quant": "Q4_K_M", "runtime": {"port": port}}
            for name, port in ports.items()
        },
    )
    models = {}
    for name in ports:
        content = f"GGUF {name}".encode()
        file = LockedFile(
            path=locked_file(name),
            role="model",
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
        )
        models[name] = LockedModel(
            input=ModelInput(repo=f"org/{name}", revision="main", quant="Q4_K_M"),
            source="hf",
            repo=f"org/{name}",
            revision="main",
            commit=COMMIT,
            files=[file],
        )
        stored = blob(file.sha256)  # synced as sync leaves it: the blob, and its view linked to it
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_bytes(content)
        view(name).parent.mkdir(parents=True, exist_ok=True)
        view(name).hardlink_to(stored)
    (folder / "models.lock").write_text(dumps(Lock(version=1, models=models)), encoding="utf-8")
    return manifest


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


def test_probe_reports_every_model_at_its_own_port_and_exits_0(project: Path) -> None:
    ports = {name: free_port() for name in NAMES}
    locked_project(project, ports)

    with (
        FakeLlamaServer(ports["alpha"], {"alpha": view("alpha")}),
        FakeLlamaServer(ports["beta"], {"beta": view("beta")}),
    ):
        result = cli(project, "probe")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        line
        for name in NAMES
        for line in (
            f"{name} at {url(ports[name])}: up (ok)",
            f"  serving: {name}",
            f"  {view(name)} is the locked file of {name} ({view(name)})",
        )
    ]


def test_probe_names_the_model_whose_server_is_down_and_exits_1(project: Path) -> None:
    ports = {name: free_port() for name in NAMES}
    locked_project(project, ports)

    with FakeLlamaServer(ports["alpha"], {"alpha": view("alpha")}):
        text = cli(project, "probe")
        as_json = cli(project, "probe", "--json")

    assert text.returncode == 1
    assert f"beta at {url(ports['beta'])}: down (no llama.cpp server answers" in text.stdout
    assert f"{view('alpha')} is the locked file of alpha" in text.stdout
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["ok"] is False
    assert [(r["name"], r["base_url"], r["up"], r["ok"]) for r in report["results"]] == [
        ("alpha", url(ports["alpha"]), True, True),
        ("beta", url(ports["beta"]), False, False),
    ]
    assert report["results"][1]["expected"] == str(view("beta"))


def test_probe_of_a_base_url_alone_finds_which_locked_model_it_serves(project: Path) -> None:
    manifest = locked_project(project, {name: free_port() for name in NAMES})
    port = free_port()

    with FakeLlamaServer(port, {"beta": view("beta")}):
        report = api.probe(url(port), None, manifest)

    assert report.ok
    [result] = report.results
    assert (result.name, result.base_url, result.matches) == ("beta", url(port), True)


def test_probe_of_a_base_url_serving_no_locked_file_says_none_and_fails(project: Path) -> None:
    manifest = locked_project(project, {name: free_port() for name in NAMES})
    port = free_port()
    other = project / "other.gguf"
    other.write_bytes(b"GGUF")

    with FakeLlamaServer(port, {"other": other}):
        report = api.probe(url(port), None, manifest)

    assert not report.ok
    [result] = report.results
    assert (result.name, result.model_path, result.candidates) == (None, str(other), NAMES)


def test_probe_asks_a_router_for_each_model_it_should_serve(project: Path) -> None:
    port = free_port()
    manifest = locked_project(project, dict.fromkeys(NAMES, port))

    with FakeLlamaServer(port, {"alpha": view("alpha"), "beta": view("beta")}, router=True):
        right = api.probe(None, None, manifest)
    with FakeLlamaServer(port, {"alpha": view("alpha"), "beta": view("alpha")}, router=True):
        swapped = api.probe(None, None, manifest)

    assert right.ok
    assert [(r.name, r.matches) for r in right.results] == [("alpha", True), ("beta", True)]
    assert not swapped.ok
    assert [(r.name, r.matches) for r in swapped.results] == [("alpha", True), ("beta", False)]


def test_probe_says_when_a_model_is_not_synced_here(project: Path) -> None:
    """One meaning of synced (Store.model_state): a view without its verified blob is not the
    locked file, so there is nothing here to compare the served file with."""
    ports = {"alpha": free_port()}
    locked_project(project, ports)
    remove(blob(hashlib.sha256(b"GGUF alpha").hexdigest()))  # read-only: Windows deletes it only so

    with FakeLlamaServer(ports["alpha"], {"alpha": view("alpha")}):
        result = cli(project, "probe", "--json")
        text = cli(project, "probe")

    [probed] = json.loads(result.stdout)["results"]
    assert (probed["name"], probed["synced"], probed["matches"], probed["expected"]) == (
        "alpha",
        False,
        None,
        None,
    )
    assert "  alpha is not synced here: no locked file to compare with ('alex-models status')" in text.stdout
