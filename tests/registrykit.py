"""A real OCI registry for the tests: Debian's ``docker-registry`` (CNCF distribution 2.8) on a
free loopback port, its storage under the test's folder, with no auth, with htpasswd Basic auth, or
with token auth (``auth``: the section ``tokenkit.TokenService.auth_config`` writes).
Its access log (stdout) says which requests reached it. ``.ci/run`` installs the package.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import bcrypt
import httpx2
from helpers import free_port, wait_for

USER = "ci"
PASSWORD = "pa55-never-shown"


class RegistryServer:
    """``docker-registry serve`` with a config of our own under ``root``."""

    def __init__(self, root: Path, *, htpasswd: bool = False, auth: str = "") -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log = root / "access.log"
        self.htpasswd = htpasswd
        self.auth = auth
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, repository: str) -> str:
        return f"oci://{self.host}/{repository}"

    def start(self) -> RegistryServer:
        binary = shutil.which("docker-registry")
        assert binary is not None, "docker-registry is not installed: apt-get install docker-registry"
        self.root.mkdir(parents=True, exist_ok=True)
        auth = self.auth
        if self.htpasswd:
            hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
            (self.root / "htpasswd").write_text(f"{USER}:{hashed}\n", encoding="utf-8")
            auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {self.root / 'htpasswd'}\n"
        config = self.root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.root / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n" + auth,
            encoding="utf-8",
        )
        with self.log.open("wb") as out:
            self._process = subprocess.Popen(
                [binary, "serve", str(config)], stdout=out, stderr=subprocess.DEVNULL
            )
        wait_for(self._up, f"docker-registry on {self.host}", timeout=15)
        return self

    def _up(self) -> bool:
        assert self._process is not None
        assert self._process.poll() is None, f"docker-registry exited; its log: {self.log}"
        try:
            return httpx2.get(f"http://{self.host}/v2/", trust_env=False).status_code in (200, 401)
        except httpx2.TransportError:
            return False

    def requests(self, method: str, fragment: str) -> int:
        """How many ``method`` requests whose path holds ``fragment`` the registry has logged."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return sum(1 for line in text.splitlines() if f'"{method} ' in line and fragment in line)

    def delete_blob(self, repository: str, sha256: str) -> None:
        answer = httpx2.delete(f"http://{self.host}/v2/{repository}/blobs/sha256:{sha256}", trust_env=False)
        assert answer.status_code == 202, answer.text

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)


def docker_config(folder: Path, host: str, password: str) -> Path:
    """A ``config.json`` as ``docker login`` leaves it (a base64 ``auth`` entry); its folder is what
    ``DOCKER_CONFIG`` names."""
    folder.mkdir(parents=True, exist_ok=True)
    token = base64.b64encode(f"{USER}:{password}".encode()).decode()
    (folder / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}), encoding="utf-8")
    return folder


def inspect(reference: str, *extra: str) -> Any:
    """What ``skopeo inspect --raw`` (a client nobody here wrote) reads at ``reference``."""
    run = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", *extra, f"docker://{reference}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)
