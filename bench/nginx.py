"""nginx as the origin of a benchmark: a real file server nobody here wrote, with the Hub API of the
project's mirror in front of it, redirecting each file download there as the Hub does to its CDN.

nginx (Debian ``nginx-light``, installed with apt-get when missing) serves the mirror root as it is:
the mirror keeps a commit's files at ``ROOT/<org>/<name>/<commit>/<path>``, the path of its CDN
addresses, so ``root ROOT`` answers them (the signature in the query is ignored). Static files go
out with ``sendfile``, and ``Range`` is answered with 206. ``rate`` is nginx's ``limit_rate``: a cap
per connection. nginx runs as a child in the foreground (``daemon off``) on a free loopback port,
its configuration, logs and temporary files in a folder of their own, and is stopped after.
The access log records each request's connection serial number (``$connection``), so the number of
TCP connections a client opened can be counted.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from suite import (
    Config,
    GiB,
    Row,
    Sample,
    alex,
    env_for,
    fresh,
    mbps,
    median,
    project_for,
    publish,
    resolve_url,
    run,
    runs,
    serving,
    snapshot_download,
)

from alex_models._fs import sha256_file

CONFIG = """\
daemon off;
{user}
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    log_format bench '$connection $request_method $status $body_bytes_sent "$http_range" $request_time $msec';
    access_log {work}/access.log bench;
    client_body_temp_path {work}/body;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 10000;
    {limit}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""

MIRROR = """
import sys, threading
from pathlib import Path
from urllib.parse import quote
from alex_models.mirror import MirrorServer

class Redirecting(MirrorServer):
    def cdn_location(self, request_host, repo, commit, path):
        return f"{sys.argv[2]}/{repo}/{commit}/{quote(path)}"

with Redirecting(Path(sys.argv[1])) as server:
    print(f"serving at {server.url} ", flush=True)
    threading.Event().wait()
"""


def ensure_nginx() -> str:
    """The nginx binary (in /usr/sbin, often not on a user's PATH), installed from Debian's
    ``nginx-light`` if missing."""
    search = f"{os.environ.get('PATH', '')}:/usr/sbin"
    if not shutil.which("nginx", path=search):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True)
    found = shutil.which("nginx", path=search)
    if found is None:
        raise SystemExit("nginx is not installed, and apt-get did not install it")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def nginx(root: Path, work: Path, rate: str | None = None) -> Iterator[str]:
    """nginx serving ``root`` on loopback, capped at ``rate`` per connection (``50m``); yields its URL."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    limit = f"limit_rate {rate};" if rate else ""
    config = work / "nginx.conf"
    # Started by root, nginx's worker would run as "nobody", who cannot read a private temp folder.
    user = "user root;" if os.geteuid() == 0 else ""
    config.write_text(CONFIG.format(user=user, work=work, port=port, root=root.absolute(), limit=limit))
    process = subprocess.Popen([ensure_nginx(), "-p", str(work), "-c", str(config), "-e", "stderr"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"nginx did not start on port {port}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()


def connections(work: Path) -> int:
    """How many TCP connections the requests in nginx's access log (``work``) came on."""
    log = work / "access.log"
    return len({line.split()[0] for line in log.read_text().splitlines()}) if log.exists() else 0


def hub_in_front(root: Path, cdn: str) -> AbstractContextManager[str]:
    """The mirror's Hub API over ``root``, redirecting file downloads to ``cdn``; yields its endpoint."""
    return serving([sys.executable, "-c", MIRROR, str(root), cdn])


# -- the scenarios (``bench/suite.py nginx nginx-capped``) ------------------------------------


NGINX_RATE = 50 * 2**20
"""nginx's ``limit_rate 50m``: 50 MiB/s per connection."""
CURL, TEE, ARIA, SNAPSHOT = (
    "curl -o",
    "curl | tee | sha256sum",
    "aria2c -x8 -s8 --checksum",
    "snapshot_download",
)


@dataclass(frozen=True)
class Origin:
    """One file on nginx behind the mirror's Hub API, and the commands that fetch it."""

    tmp: Path
    project: Path
    env: dict[str, str]
    url: str
    name: str
    sha256: str
    snapshot: list[str | Path]
    """snapshot_download of the file's commit."""

    def peers(self) -> dict[str, list[str | Path]]:
        """Each peer's command, writing into ``out/<n>``."""
        out, url, sha = self.tmp / "out", self.url, self.sha256
        tee = 'curl -sfL "$1" | tee "$2" | sha256sum | grep -q "^$3 "'  # fails on other bytes
        return {
            CURL: ["curl", "-sfL", "-o", out / "0" / self.name, url],
            TEE: ["sh", "-c", tee, "sh", url, out / "1" / self.name, sha],
            ARIA: ["aria2c", "-x8", "-s8", "-q", "--file-allocation=falloc", f"--checksum=sha-256={sha}",
                   "-d", out / "2", "-o", self.name, url],
            SNAPSHOT: self.snapshot,
        }  # fmt: skip

    def ours(self) -> Sample:
        fresh(self.tmp / "store")
        return run(alex("sync", "--frozen", "--quiet"), self.env, self.project)

    def time(self, command: Sequence[str | Path]) -> float:
        fresh(self.tmp / "out", self.tmp / "snapshot_download")
        for n in range(3):
            (self.tmp / "out" / str(n)).mkdir(parents=True)
        return run(command, self.env, self.tmp).seconds


@contextmanager
def on_nginx(config: Config, scenario: str, size: int, rate: int | None) -> Iterator[Origin]:
    """One GGUF of ``size`` on nginx (capped at ``rate`` bytes/s per connection), locked."""
    tmp, repo = config.tmp / scenario, f"bench/{scenario}-GGUF"
    commit, names = publish(tmp / "root", repo, [size], tmp / "work")
    sha = sha256_file(tmp / "root" / repo / commit / names[0])
    project = project_for(tmp / "project", repo, names)
    with (
        nginx(tmp / "root", tmp / "nginx", str(rate) if rate else None) as cdn,
        hub_in_front(tmp / "root", cdn) as hub,
    ):
        env = env_for(hub, tmp)
        run(alex("lock"), env, project)
        url = resolve_url(hub, repo, commit, names[0])
        snapshot = snapshot_download(repo, commit, tmp / "snapshot_download")
        yield Origin(tmp, project, env, url, names[0], sha, snapshot)


def compare(
    label: str, size: int, ours: list[float], times: dict[str, list[float]], wanted: dict[str, float]
) -> list[Row]:
    """A row per peer: its median time over ours; ``wanted`` holds the minimum ratios."""
    mine = median(ours)
    rows = []
    for peer, samples in times.items():
        theirs = median(samples)
        ratio = theirs / mine
        target = f">= {wanted[peer]:.2g}x" if peer in wanted else "-"
        rows.append(
            Row(
                label,
                f"{mine:.2f} s ({mbps(size, mine)})",
                f"{peer}: {theirs:.2f} s ({mbps(size, theirs)}; {runs(samples)})",
                f"{ratio:.2f}x",
                target,
                ratio >= wanted.get(peer, 0),
            )
        )
    return rows  # fmt: skip


def nginx_cold(config: Config) -> list[Row]:
    """One 2 GiB GGUF from nginx, uncapped: every tool in each round, round 0 unmeasured."""
    size = config.size(2 * GiB)
    ours: list[Sample] = []
    times: dict[str, list[float]] = {}
    with on_nginx(config, "nginx", size, None) as origin:
        for round_ in range(config.runs + 1):
            sample = origin.ours()
            seconds = {peer: origin.time(command) for peer, command in origin.peers().items()}
            if round_:
                ours.append(sample)
                for peer, value in seconds.items():
                    times.setdefault(peer, []).append(value)
    label = f"nginx, 1 x {size / GiB:.3g} GiB, uncapped"
    ours_seconds = [s.seconds for s in ours]
    return [
        Row(label, f"{median(ours_seconds):.2f} s ({runs(ours_seconds)})", "-", "-", "-", True),
        *compare(label, size, ours_seconds, times, {CURL: 1 / 1.3, SNAPSHOT: 2.0}),
        rss_row(ours),
    ]


def nginx_capped(config: Config) -> list[Row]:
    """1 GiB from nginx at 50 MiB/s per connection. The single-stream peers take ~20 s a run: they
    run ``--snapshot-runs`` times, after the rounds of ours and aria2c."""
    size = config.size(GiB)
    ours: list[Sample] = []
    times: dict[str, list[float]] = {ARIA: []}
    with on_nginx(config, "nginx-capped", size, NGINX_RATE) as origin:
        peers = origin.peers()
        for round_ in range(config.runs + 1):
            sample = origin.ours()
            aria = origin.time(peers[ARIA])
            if round_:
                ours.append(sample)
                times[ARIA].append(aria)
        for peer in (CURL, TEE, SNAPSHOT):
            times[peer] = [origin.time(peers[peer]) for _ in range(config.snapshot_runs)]
    label = f"nginx, 1 x {size / GiB:.3g} GiB, 50 MiB/s per connection"
    ours_seconds = [s.seconds for s in ours]
    line = size / median(ours_seconds) / (8 * NGINX_RATE)
    return [
        Row(label, f"{median(ours_seconds):.2f} s ({runs(ours_seconds)})", "8 connections x 50 MiB/s",
            f"{line:.2f} of it", ">= 0.8", line >= 0.8),
        *compare(label, size, ours_seconds, times, {SNAPSHOT: 5.0}),
        rss_row(ours),
    ]  # fmt: skip


def rss_row(samples: list[Sample]) -> Row:
    peak = max(s.max_rss for s in samples)
    return Row("peak RSS of our sync", f"{peak / 1e6:.0f} MB (max of {len(samples)})", "-", "-", "<= 150 MB",
               peak <= 150e6)  # fmt: skip
