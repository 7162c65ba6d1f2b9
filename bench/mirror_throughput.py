"""How fast the mirror serves bytes on loopback, measured with curl as the client.

The mirror must never be the bottleneck of a download benchmark (target: >= 1 GB/s on loopback).
The server runs as its own process (``python -m alex_models.mirror``), the clients are curl
processes writing to /dev/null, so neither shares a GIL with the other.

    .venv/bin/python bench/mirror_throughput.py --size 1GiB --connections 1 4 --runs 3

Prints a Markdown table for docs/benchmarks.md. Generated data stays in a temporary directory.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from alex_models.mirror.faults import Fault
from alex_models.mirror.root import MirrorRoot

REPO = "bench/throughput"
FILE = "model.gguf"


def parse_size(text: str) -> int:
    return int(Fault.parse(f"drop-after={text}").value)


def make_file(path: Path, size: int) -> None:
    block = bytes(range(256)) * 4096  # 1 MiB; content does not matter to sendfile
    with path.open("wb") as f:
        remaining = size
        while remaining:
            chunk = block[: min(len(block), remaining)]
            f.write(chunk)
            remaining -= len(chunk)


def start_server(root: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "alex_models.mirror", "--root", str(root), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    if process.stdout is None:
        raise SystemExit("no stdout")
    match = re.search(r"at (http://\S+) ", process.stdout.readline())
    if not match:
        process.kill()
        raise SystemExit("mirror did not start")
    return process, match[1]


def download(url: str, size: int, connections: int) -> float:
    """Seconds to fetch the whole file as ``connections`` parallel byte ranges."""
    step = -(-size // connections)
    ranges = [(i, min(i + step, size) - 1) for i in range(0, size, step)]
    began = time.perf_counter()
    curls = [subprocess.Popen(["curl", "-sfL", "-o", "/dev/null", "-r", f"{a}-{b}", url]) for a, b in ranges]
    if any(c.wait() != 0 for c in curls):
        raise SystemExit("curl failed")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="alex-bench-") as tmp:
        source = Path(tmp) / FILE
        make_file(source, size)
        MirrorRoot(Path(tmp) / "root").commit(REPO, {FILE: source})
        server, endpoint = start_server(Path(tmp) / "root")
        try:
            url = f"{endpoint}/{REPO}/resolve/main/{FILE}"
            download(url, size, 1)  # warm the page cache and the server's hash of the file
            print(f"| file size | connections | median GB/s (of {args.runs}) | runs (s) |")
            print("| --- | --- | --- | --- |")
            for connections in args.connections:
                times = [download(url, size, connections) for _ in range(args.runs)]
                rate = size / statistics.median(times) / 1e9
                runs = ", ".join(f"{t:.2f}" for t in times)
                print(f"| {args.size} | {connections} | {rate:.2f} | {runs} |")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
