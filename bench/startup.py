"""Start-up of the commands that should feel instant, each a whole process, bytecode caching on.

    .venv/bin/python bench/startup.py                       # 15 runs of each
    .venv/bin/python bench/startup.py --runs 31 --dir /work

Scenarios (the targets are issue 18's):

===========  ===========================================================  ==========
no-op sync   ``alex-models sync`` in a synced project, 10 x 1 GiB present  <= 0.25 s
status       ``alex-models status`` in the same project                    <= 0.3 s
path         ``alex-models path m0``                                       <= 0.3 s
--help       ``alex-models --help``                                        <= 0.2 s
floor        ``python -c pass``: the interpreter alone                     -
===========  ===========================================================  ==========

The store holds 10 GGUF files of 1 GiB each, sparse (a no-op sync compares each blob's stat with
its verified record and never reads its bytes), locked through the project's mirror and hard-linked
from the mirror's copy into the store; one offline ``sync`` then hashes them and writes the
records, as a sync that downloaded them would (and keeps the parsed manifest and lock in the
user's cache, here ``XDG_CACHE_HOME`` inside the data folder). The endpoint is unreachable while
timing: no command measured may need the network.

Each command runs once unmeasured (it writes the bytecode caches, as a user's first run does),
then ``--runs`` times; for each the wall time and the CPU time the kernel charged to the child
(user + sys, from ``wait4``). Prints the minimum and the median of both: on a machine shared
with other work the minimum is the closest to an idle machine, and CPU time moves less than wall
time. The load average is printed with them. Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from suite import GiB, alex, env_for, machine, mirror, project_for

from alex_models._fs import sha256_file
from alex_models.mirror.root import MirrorRoot
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_gguf

FILES = 10
TARGETS = {"no-op sync": 0.25, "status": 0.3, "path": 0.3, "--help": 0.2}


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def timed(command: list[str], env: dict[str, str], cwd: Path) -> Timing:
    """One run to its end: wall seconds, and the CPU seconds the kernel charged to it."""
    began = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}): {stderr.strip()[-2000:]}")
    return Timing(wall, usage.ru_utime + usage.ru_stime)


def synced_project(tmp: Path) -> tuple[Path, dict[str, str]]:
    """A project of ``FILES`` sparse GiB GGUFs, locked and synced; its environment, endpoint gone."""
    root, work, repo = MirrorRoot(tmp / "root"), tmp / "work", "bench/startup-GGUF"
    work.mkdir(parents=True)
    sources = {}
    for i in range(FILES):
        name = f"model-{i}-Q4_K_M.gguf"
        # A different context length per file makes every file's bytes, and so its blob, distinct.
        sources[name] = write_tiny_gguf(work / name, context_length=4096 + i)
        os.truncate(sources[name], GiB)  # the rest is a hole: 1 GiB on the books, no disk
    root.commit(repo, sources)
    project = project_for(tmp / "project", repo, list(sources))
    with mirror(root.root) as endpoint:
        timed([str(part) for part in alex("lock")], env_for(endpoint, tmp), project)
    env = {**env_for("http://127.0.0.1:9", tmp), "XDG_CACHE_HOME": str(tmp / "cache")}
    store = Store(Path(env["ALEX_MODELS_HOME"])).init()
    for source in sources.values():
        blob = store.blob_path(sha256_file(source))
        blob.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, blob)
    timed([str(part) for part in alex("sync", "--offline")], env, project)  # hashes once, records each
    return project, env


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs of each command (default 15)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where data is made")
    args = parser.parse_args()
    commands = {
        "no-op sync": alex("sync"),
        "status": alex("status"),
        "path": alex("path", "m0"),
        "--help": alex("--help"),
        "floor": [sys.executable, "-c", "pass"],
    }
    before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="alex-startup-", dir=args.dir) as tmp_name:
        project, env = synced_project(Path(tmp_name))
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's Python caches bytecode
        results: dict[str, list[Timing]] = {}
        for name, command in commands.items():
            argv = [str(part) for part in command]
            timed(argv, env, project)  # unmeasured: writes the bytecode caches
            results[name] = [timed(argv, env, project) for _ in range(args.runs)]
    after = os.getloadavg()
    print(machine())
    print(f"- Command: `{' '.join(['.venv/bin/python', 'bench/startup.py', *sys.argv[1:]])}`")
    print(f"- Load average (1 min) before and after: {before[0]:.2f}, {after[0]:.2f}\n")
    print("| command | wall min | wall median | CPU min | CPU median | target | met (wall min) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, samples in results.items():
        walls, cpus = [s.wall for s in samples], [s.cpu for s in samples]
        target = TARGETS.get(name)
        met = "-" if target is None else ("yes" if min(walls) <= target else "**no**")
        print(
            f"| {name} | {min(walls):.3f} s | {statistics.median(walls):.3f} s | {min(cpus):.3f} s | "
            f"{statistics.median(cpus):.3f} s | {'-' if target is None else f'<= {target} s'} | {met} |"
        )


if __name__ == "__main__":
    main()
