"""Small helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import socketserver
import ssl
import subprocess
import sysconfig
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest

from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord


def console_script(name: str) -> Path:
    """The console script ``name`` installed for this Python: ``bin/name`` in a POSIX virtualenv,
    ``Scripts\\name.exe`` on Windows (pip puts them in sysconfig's scripts folder)."""
    scripts = sysconfig.get_path("scripts")
    found = shutil.which(name, path=scripts)
    return Path(found) if found else Path(scripts) / name  # missing: the run fails naming the path


CLI = console_script("alex-models")


def write_manifest(directory: Path, models: Mapping[str, Mapping[str, object]]) -> Path:
    """``directory/models.yaml`` with these models, in this order (JSON is YAML)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "models.yaml"
    path.write_text(json.dumps({"version": 1, "models": models}, indent=2) + "\n", encoding="utf-8")
    return path


def cli(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The installed ``alex-models`` in ``cwd`` with this test's environment (HF_ENDPOINT included),
    stdout and stderr captured (so neither is a TTY)."""
    return subprocess.run(
        [str(CLI), *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextlib.contextmanager
def small_disk(mount_point: Path, size: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """ALEX_MODELS_HOME on a tmpfs of ``size`` bytes, unmounted afterwards (Linux, as root: mark
    the test ``linux``)."""
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.fail(
            f"cannot mount a {size}-byte tmpfs for a disk-space test (needs root): {mounted.stderr.strip()}"
        )
    try:
        monkeypatch.setenv("ALEX_MODELS_HOME", str(mount_point))
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the filesystem is full; the bytes written."""
    written = 0
    zeros = bytes(1024 * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                written += os.write(fd, zeros)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)
    return written


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` read-only, as a pre-synced shared model volume is: a read-only bind mount of
    itself (as root, here and in CI), else ``chmod -R a-w``; writable again afterwards. Windows
    ignores a folder's read-only bit: mark the test ``posix``."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(folder)], check=True)
        try:
            yield folder
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(folder)], check=True)
        return
    for step in (["--bind", str(folder), str(folder)], ["-o", "remount,bind,ro", str(folder)]):
        mounted = subprocess.run(["mount", *step], capture_output=True, text=True, check=False)
        if mounted.returncode != 0:
            if step[0] != "--bind":
                subprocess.run(["umount", str(folder)], check=True)
            pytest.fail(f"cannot make {folder} a read-only bind mount: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder`` (itself included) with its mtime and size: equal before and
    after a command only if it wrote nothing there."""
    found = {}
    for path in [folder, *folder.rglob("*")]:
        st = path.lstat()
        found[str(path.relative_to(folder))] = (st.st_mtime_ns, st.st_size)
    return found


def home() -> Path:
    """This test's store (``ALEX_MODELS_HOME``, set by the ``isolated_home`` fixture)."""
    return Path(os.environ["ALEX_MODELS_HOME"])


def blob(digest: str) -> Path:
    return home() / "blobs" / "sha256" / digest[:2] / digest


def blob_files() -> list[Path]:
    return sorted(p for p in (home() / "blobs").rglob("*") if p.is_file())


def view_files() -> list[Path]:
    top = home() / "llama.cpp"
    return sorted(p for p in top.rglob("*") if p.is_file() or p.is_symlink()) if top.exists() else []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha_file(path: Path) -> str:
    """The SHA256 of a file read in pieces (test files run to tens of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Hub:
    """What a test module's ``hub`` fixture put on the mirror: the bytes it committed (keyed as
    that module names them) and each repo's commit id."""

    root: MirrorRoot
    server: MirrorServer
    files: Mapping[str, bytes]
    commits: Mapping[str, str]


def view(hub: Hub, repo: str, path: str) -> Path:
    """Where sync links ``repo``'s ``path`` at the commit the ``hub`` fixture made."""
    return home() / "llama.cpp" / "hf" / repo / hub.commits[repo] / path


def cdn_gets(log: list[RequestRecord], name: str | None = None) -> list[RequestRecord]:
    """The GETs of LFS bytes (from the CDN origin), of the file ``name`` if given."""
    return [
        r
        for r in log
        if r.origin == "cdn" and r.method == "GET" and (name is None or r.path.endswith("/" + name))
    ]


def settled_log(
    server: MirrorServer, ready: Callable[[list[RequestRecord]], bool], what: str, timeout: float = 15.0
) -> list[RequestRecord]:
    """The request log once ``ready(log)`` holds: the records a test expects (a request is logged
    after its last byte, a killed client's when the server next fails to write to it)."""
    log = server.wait_log(ready, timeout)
    if not ready(log):
        pytest.fail(f"timed out after {timeout}s waiting for the mirror to log {what}")
    return log


def start(cwd: Path, *args: str, **popen: Any) -> tuple[subprocess.Popen[str], Path]:
    """``alex-models`` in the background, and the file its stderr goes to (stdout: same name, .o)."""
    count = len(list(cwd.parent.glob("run-*.o")))
    out_path, err_path = cwd.parent / f"run-{count}.o", cwd.parent / f"run-{count}.e"
    with out_path.open("w") as out, err_path.open("w") as err:
        process = subprocess.Popen(
            [str(CLI), *args], cwd=cwd, env=dict(os.environ), stdout=out, stderr=err, text=True, **popen
        )
    return process, err_path


def progress_done(record: Path) -> int:
    """Bytes a progress record says are on disk (0 while it does not exist or is being replaced)."""
    try:
        segments = json.loads(record.read_text(encoding="utf-8"))["segments"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return 0
    return sum(int(done) for _, _, done in segments)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition()`` every 20 ms until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def free_port() -> int:
    """A loopback port nothing listens on now (bound, then released): for a server to take, or
    for a client to be refused on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


SETTLE = "/__settle__"
"""A path no route knows: requested last, its record in the log means every earlier one is there."""


def since_settled(server: MirrorServer) -> list[RequestRecord]:
    """Every request in the log, once a request made now has been logged (and without it)."""
    httpx2.get(server.url + SETTLE, trust_env=False)
    log = server.wait_log(lambda records: any(r.path == SETTLE for r in records))
    return [r for r in log if r.path != SETTLE]


def mirror_process(command: list[str]) -> tuple[subprocess.Popen[str], str]:
    """A mirror started in the foreground by ``command`` (``mirror serve`` or ``python -m
    alex_models.mirror``, on port 0), and the endpoint its first line announces."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    banner = process.stdout.readline()
    match = re.search(r"at (http://127\.0\.0\.1:\d+) ", banner)
    assert match, banner
    return process, match[1]


def serve_tls(server: socketserver.TCPServer, folder: Path) -> ssl.SSLContext:
    """Make ``server`` (not started yet) answer over TLS with a new self-signed certificate for
    127.0.0.1, written in ``folder``; a client context that trusts it."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    server.socket = served.wrap_socket(server.socket, server_side=True)
    return ssl.create_default_context(cafile=str(cert))
