"""8 ``hf download`` clients of one cold file: through ``mirror serve --store`` pulling through,
against the same 8 straight from upstream (the project's mirror, on loopback), in one run.

    .venv/bin/python bench/pull_through.py --dir /work               # 1 GiB, 1 run of each
    .venv/bin/python bench/pull_through.py --size 256MiB --runs 1    # a quick try

Upstream is a ``MirrorServer`` in this process, so its request log counts the bytes it sent (the
CDN GETs of the file). Through the mirror, each run starts from a store holding the lock only
(cold); the mirror is its own process, and its peak RSS (``VmHWM``) is read before it stops. Each
client is a whole ``hf download`` process with a cache of its own. Prints Markdown for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from fleet import parse_size
from suite import BIN, env_for, fresh, high_water_mark, machine, median, runs

from alex_models import api
from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_gguf

REPO, NAME = "bench/cold", "cold-Q4_K_M.gguf"
CLIENTS = 8


def upstream_bytes(server: MirrorServer) -> int:
    return sum(
        r.bytes_sent for r in server.log if r.origin == "cdn" and r.method == "GET" and r.path.endswith(NAME)
    )


def clients(endpoint: str, work: Path) -> float:
    """CLIENTS ``hf download`` at once, each into its own cache; the wall time until the last ends."""
    env = env_for(endpoint, work)
    commands = [
        [str(BIN / "hf"), "download", REPO, NAME, "--cache-dir", str(work / f"hf-{n}")]
        for n in range(CLIENTS)
    ]
    began = time.perf_counter()
    processes = [
        subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for c in commands
    ]
    failed = [p.stderr.read().decode(errors="replace")[-800:] for p in processes if p.wait() and p.stderr]
    if failed:
        raise SystemExit(f"hf download failed: {failed[0]}")
    return time.perf_counter() - began


def through_mirror(upstream: MirrorServer, lock: Path, work: Path) -> tuple[float, int, int]:
    """(wall seconds, upstream bytes, mirror peak RSS) for one cold run through the mirror."""
    home = work / "mirror-store"
    Store(home).init()
    command = [str(BIN / "alex-models"), "mirror", "serve", "--store", str(home), "--lock", str(lock)]
    command += ["--port", "0", "--cdn-port", "0", "--upstream", upstream.url, "-q"]
    mirror = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        banner = mirror.stdout.readline() if mirror.stdout else ""
        found = re.search(r"at (http://\S+) ", banner)
        if not found:
            raise SystemExit(f"the mirror did not start: {banner!r}")
        upstream.clear_log()
        seconds = clients(found[1], work)
        rss = high_water_mark(mirror.pid)
        sent = upstream_bytes(upstream)
    finally:
        mirror.send_signal(signal.SIGTERM)
        mirror.wait()
    return seconds, sent, rss


def direct(upstream: MirrorServer, work: Path) -> tuple[float, int]:
    upstream.clear_log()
    seconds = clients(upstream.url, work)
    time.sleep(0.5)  # the last records land just after the clients' last bytes
    return seconds, upstream_bytes(upstream)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where the data goes (default: a temp folder)")
    options = parser.parse_args()
    size_asked = parse_size(options.size)
    with tempfile.TemporaryDirectory(dir=options.dir, prefix="pull-bench-") as folder:
        base = Path(folder)
        root = MirrorRoot(base / "root")
        made = write_tiny_gguf(base / NAME, padding=size_asked)
        size = made.stat().st_size
        root.commit(REPO, {NAME: made})
        made.unlink()
        project = base / "project"
        project.mkdir()
        (project / "models.yaml").write_text(f"version: 1\nmodels:\n  cold: {{repo: {REPO}, file: {NAME}}}\n")
        with MirrorServer(root.root) as upstream:
            os.environ["HF_ENDPOINT"] = upstream.url
            api.lock(project / "models.yaml")
            mirrored: list[tuple[float, int, int]] = []
            straight: list[tuple[float, int]] = []
            for _ in range(options.runs):
                fresh(base / "work")
                straight.append(direct(upstream, base / "work"))
                fresh(base / "work")
                mirrored.append(through_mirror(upstream, project / "models.lock", base / "work"))
        fresh(base / "work")
    load = Path("/proc/loadavg").read_text().split()[:3]
    total = CLIENTS * size
    print(machine())
    print(f"- Load average (1, 5, 15 min) at the end: {', '.join(load)}")
    print(
        f"- Command: `.venv/bin/python bench/pull_through.py --size {options.size} --runs {options.runs}`\n"
    )
    print(
        "| 8 x `hf download`, one cold file | wall (s) | aggregate MB/s | upstream bytes | mirror peak RSS |"
    )
    print("| --- | --- | --- | --- | --- |")
    wall = median([s for s, _ in straight])
    print(
        f"| straight from upstream | {wall:.2f} ({runs([s for s, _ in straight])}) "
        f"| {total / wall / 1e6:.0f} | {max(b for _, b in straight) / size:.2f} x the file | - |"
    )
    wall = median([s for s, _, _ in mirrored])
    print(
        f"| through the mirror, pulling through | {wall:.2f} ({runs([s for s, _, _ in mirrored])}) "
        f"| {total / wall / 1e6:.0f} | {max(b for _, b, _ in mirrored) / size:.2f} x the file "
        f"| {max(r for _, _, r in mirrored) / 1e6:.0f} MB |"
    )


if __name__ == "__main__":
    main()
