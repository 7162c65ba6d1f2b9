"""Cold and no-op ``alex-models sync`` against the mirror on loopback, with peers in the same run.

    .venv/bin/python bench/sync.py --files 3 --size 1GiB --runs 3

Cold sync: an empty store each run; peer: ``curl -o`` of the same files (to the same disk, in
parallel, which is the link and disk limit). No-op sync: the whole ``alex-models sync`` process
with everything present; peer: ``sha256sum`` of the same files (what a naive re-verify costs).
The mirror runs as its own process; generated data stays in a temporary directory under --dir.
Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from alex_models.ggufinfo import write_tiny_gguf
from alex_models.mirror.faults import Fault
from alex_models.mirror.repos import MirrorRoot

REPO = "bench/sync-GGUF"
BIN = Path(sys.executable).parent


def parse_size(text: str) -> int:
    return int(Fault.parse(f"drop-after={text}").value)


def start_mirror(root: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "alex_models.mirror", "--root", str(root), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    match = re.search(r"at (http://\S+) ", line)
    if not match:
        process.kill()
        raise SystemExit(f"mirror did not start: {line!r}")
    return process, match[1]


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    began = time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def prepare(tmp: Path, count: int, size: int) -> tuple[list[str], str, Path]:
    """GGUF files in a mirror root, and a project whose manifest names them all."""
    names = [f"model-{i}-Q4_K_M.gguf" for i in range(count)]
    sources = {name: write_tiny_gguf(tmp / name, padding=size) for name in names}
    commit = MirrorRoot(tmp / "root").commit(REPO, sources)
    project = tmp / "project"
    project.mkdir()
    entries = "".join(f"  m{i}: {{repo: {REPO}, file: {name}}}\n" for i, name in enumerate(names))
    (project / "models.yaml").write_text(f"version: 1\nmodels:\n{entries}")
    return names, commit, project


def curl_all(urls: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    began = time.perf_counter()
    curls = [subprocess.Popen(["curl", "-sfL", "-o", str(out / str(i)), url]) for i, url in enumerate(urls)]
    if any(c.wait() for c in curls):
        raise SystemExit("curl failed")
    return time.perf_counter() - began


def measure(
    tmp: Path, names: list[str], commit: str, project: Path, endpoint: str, runs: int
) -> dict[str, list[float]]:
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "ALEX_MODELS_HOME": str(tmp / "store"),
    }
    sync = [str(BIN / "alex-models"), "sync", "--quiet", "--frozen"]
    subprocess.run([BIN / "alex-models", "lock"], env=env, cwd=project, check=True, stdout=subprocess.DEVNULL)
    urls = [f"{endpoint}/{REPO}/resolve/{commit}/{name}" for name in names]
    times: dict[str, list[float]] = {"cold": [], "curl": [], "noop": [], "sha256sum": []}
    for _ in range(runs):
        shutil.rmtree(tmp / "store", ignore_errors=True)
        times["cold"].append(timed(sync, env, project))
        times["noop"].append(timed(sync, env, project))
        times["curl"].append(curl_all(urls, tmp / "curl"))
        blobs = [str(p) for p in (tmp / "store" / "blobs").rglob("*") if p.is_file()]
        times["sha256sum"].append(timed(["sha256sum", *blobs], env, project))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--size", default="1GiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--dir", type=Path, default=Path(tempfile.gettempdir()), help="where data is generated"
    )
    args = parser.parse_args()
    size = parse_size(args.size)
    with tempfile.TemporaryDirectory(prefix="alex-bench-sync-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        names, commit, project = prepare(tmp, args.files, size)
        mirror, endpoint = start_mirror(tmp / "root")
        try:
            times = measure(tmp, names, commit, project, endpoint, args.runs)
        finally:
            mirror.terminate()
            mirror.wait()
    median = {key: statistics.median(values) for key, values in times.items()}
    total = size * args.files
    rate = {key: total / value / 1e6 for key, value in median.items()}
    print(f"{args.files} files of {args.size} ({total / 1e9:.2f} GB), median of {args.runs} runs\n")
    print("| scenario | alex-models | peer | ours / peer |")
    print("| --- | --- | --- | --- |")
    print(
        f"| cold sync | {median['cold']:.2f} s ({rate['cold']:.0f} MB/s) | curl -o, parallel: "
        f"{median['curl']:.2f} s ({rate['curl']:.0f} MB/s) | {rate['cold'] / rate['curl']:.2f}x |"
    )
    print(
        f"| no-op sync | {median['noop']:.2f} s (whole process) | sha256sum: {median['sha256sum']:.2f} s "
        f"| {median['sha256sum'] / median['noop']:.1f}x faster |"
    )


if __name__ == "__main__":
    main()
