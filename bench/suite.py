"""alex-models side by side with its peers, in one run, on one mirror server and the same files.

    .venv/bin/python bench/suite.py                         # every scenario at full size
    .venv/bin/python bench/suite.py cold lock --runs 5      # some scenarios
    .venv/bin/python bench/suite.py --scale 0.1             # every size divided by ten, for a try

Scenarios (the targets are issue 7's; nginx's are issue 18's):

=========  ==========================================================  ==========================
nginx      one 2 GiB file from nginx (``bench/nginx.py``) behind the   <= 1.3x curl -o's time,
           mirror's Hub API, no limits; peers: curl -o, curl | tee |   >= 2x snapshot_download
           sha256sum, aria2c -x8 -s8 --checksum, snapshot_download
nginx-     one 1 GiB file from nginx at 50 MiB/s per connection        >= 0.8 x 8 x 50 MiB/s,
capped     (``limit_rate``); the same peers; our peak RSS              >= 5x snapshot_download
cold       3 files of 1 GiB, loopback, no limits                       >= 0.9x curl -o,
           peers: curl -o (in parallel), snapshot_download             >= 1.5x snapshot_download
capped     one 2 GiB file, the server capped at 50 MB/s per connection >= 4x snapshot_download,
           peers: snapshot_download, aria2c -x8 -s8; our peak RSS      >= 1.0x aria2c, <= 150 MB
noop       sync with 10 GiB already present; peer: sha256sum           <= 0.5 s whole process
verify     verify of the same 10 GiB; peer: sha256sum                  >= 0.9x its throughput
lock       50 repos, 50 ms latency per API request; peer: a loop of    <= 1 s, >= 10x the loop
           HfApi.model_info + get_paths_info
help       alex-models --help; peer: hf --help                         <= 0.3 s
=========  ==========================================================  ==========================

Every time is a whole process, started the same way for us and the peers, median of ``--runs``.
Before each timed run the previous output is deleted and dirty pages are flushed (``sync``), so no
run pays for another's writes. A download scenario first runs every tool once unmeasured: on
this VM the first writes into fresh page cache after the data is generated cost several times
more (a 3 GiB sync took 40 s the first time, 4 s after), whichever tool comes first. The
mirror runs as its own process; generated data lives in a temporary directory under ``--dir``
and is removed at the end. Prints Markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from alex_models.mirror.root import MirrorRoot
from alex_models.tinymodels import write_tiny_gguf

GiB = 1024**3
BIN = Path(sys.executable).parent
SCENARIOS = ("nginx", "nginx-capped", "cold", "capped", "noop", "verify", "lock", "help")


@dataclass(frozen=True)
class Sample:
    seconds: float
    max_rss: int
    """Peak resident set size of the process, bytes."""


@dataclass(frozen=True)
class Row:
    scenario: str
    ours: str
    peer: str
    ratio: str
    target: str
    met: bool


# -- measuring ---------------------------------------------------------------------------------------


def run(command: Sequence[str | Path], env: dict[str, str], cwd: Path) -> Sample:
    """Run a command to its end; its wall time and peak RSS.

    The peak is the process's own high-water mark (``VmHWM``), read every 20 ms until it ends:
    wait4's ``ru_maxrss`` would report this (larger) Python's RSS, which a child inherits at fork
    and keeps across exec.
    """
    began = time.perf_counter()
    process = subprocess.Popen(
        [str(part) for part in command], env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = 0
    while True:
        peak = max(peak, high_water_mark(process.pid))
        try:
            process.wait(timeout=0.02)
            break
        except subprocess.TimeoutExpired:
            continue
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise SystemExit(f"{command[0]} failed ({process.returncode}): {stderr.strip()[-2000:]}")
    return Sample(seconds, peak)


def high_water_mark(pid: int) -> int:
    """The peak resident set size of a running process, bytes (0 once it has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found[1]) * 1024 if found else 0


def run_all(commands: Sequence[Sequence[str | Path]], env: dict[str, str], cwd: Path) -> float:
    """Several commands at once (curl, one per file); the wall time until the last ends."""
    began = time.perf_counter()
    processes = [
        subprocess.Popen([str(p) for p in c], env=env, cwd=cwd, stdout=subprocess.DEVNULL) for c in commands
    ]
    if any(process.wait() for process in processes):
        raise SystemExit(f"{commands[0][0]} failed")
    return time.perf_counter() - began


def fresh(*paths: Path) -> None:
    """Delete earlier output and flush dirty pages, so the next run starts from the same state."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
    os.sync()


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples)


def runs(samples: Sequence[float]) -> str:
    return "runs " + ", ".join(f"{s:.2f}" for s in samples)


def mbps(size: int, seconds: float) -> str:
    return f"{size / seconds / 1e6:.0f} MB/s"


# -- the mirror and the data -------------------------------------------------------------------------


@contextmanager
def mirror(root: Path, *faults: str) -> Iterator[str]:
    """The project's mirror server as its own process; yields its endpoint."""
    command = [sys.executable, "-m", "alex_models.mirror", "--root", str(root), "--port", "0", "--quiet"]
    for fault in faults:
        command += ["--fault", fault]
    with serving(command) as endpoint:
        yield endpoint


@contextmanager
def serving(command: list[str]) -> Iterator[str]:
    """A mirror started by ``command``, which prints ``… at URL …`` first; yields that URL."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        match = re.search(r"at (http://\S+) ", line)
        if not match:
            raise SystemExit(f"mirror did not start: {line!r}")
        yield match[1]
    finally:
        process.terminate()
        process.wait()


def publish(root: Path, repo: str, sizes: Sequence[int], work: Path) -> tuple[str, list[str]]:
    """GGUF files of these sizes, all different bytes, committed to ``repo``; (commit, names)."""
    work.mkdir(parents=True, exist_ok=True)
    names = [f"model-{i}-Q4_K_M.gguf" for i in range(len(sizes))]
    # A different context length per file makes every file's bytes, and so its blob, distinct.
    sources = {
        name: write_tiny_gguf(work / name, context_length=4096 + i, padding=size)
        for i, (name, size) in enumerate(zip(names, sizes, strict=True))
    }
    commit = MirrorRoot(root).commit(repo, sources)
    shutil.rmtree(work)  # the mirror holds its own copy
    return commit, names


def project_for(folder: Path, repo: str, names: Sequence[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    entries = "".join(f"  m{i}: {{repo: {repo}, file: {name}}}\n" for i, name in enumerate(names))
    (folder / "models.yaml").write_text(f"version: 1\nmodels:\n{entries}")
    return folder


def env_for(endpoint: str, tmp: Path) -> dict[str, str]:
    return {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HOME": str(tmp / "hf-home"),
        "ALEX_MODELS_HOME": str(tmp / "store"),
    }


def alex(*args: str) -> list[str | Path]:
    return [BIN / "alex-models", *args]


def snapshot_download(repo: str, commit: str, cache: Path) -> list[str | Path]:
    code = (
        "import sys; from huggingface_hub import snapshot_download; "
        "snapshot_download(sys.argv[1], revision=sys.argv[2], cache_dir=sys.argv[3])"
    )
    return [sys.executable, "-c", code, repo, commit, str(cache)]


def resolve_url(endpoint: str, repo: str, commit: str, name: str) -> str:
    return f"{endpoint}/{repo}/resolve/{commit}/{name}"


# -- scenarios ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    tmp: Path
    runs: int
    scale: float
    snapshot_runs: int

    def size(self, nominal: int) -> int:
        return max(1, int(nominal * self.scale))


def cold(config: Config) -> list[Row]:
    tmp, repo = config.tmp / "cold", "bench/cold-GGUF"
    sizes = [config.size(GiB)] * 3
    commit, names = publish(tmp / "root", repo, sizes, tmp / "work")
    project = project_for(tmp / "project", repo, names)
    total = sum(sizes)
    times: dict[str, list[float]] = {"ours": [], "curl": [], "snapshot": []}
    with mirror(tmp / "root") as endpoint:
        env = env_for(endpoint, tmp)
        run(alex("lock"), env, project)
        urls = [resolve_url(endpoint, repo, commit, name) for name in names]
        curls = [
            ["curl", "-sfL", "-o", str(tmp / "curl" / name), url]
            for name, url in zip(names, urls, strict=True)
        ]
        for round_ in range(config.runs + 1):  # round 0 warms up: see rounds()
            fresh(tmp / "store")
            ours = run(alex("sync", "--frozen", "--quiet"), env, project).seconds
            fresh(tmp / "curl")
            (tmp / "curl").mkdir()
            curl = run_all(curls, env, tmp)
            fresh(tmp / "hf")
            snap = run(snapshot_download(repo, commit, tmp / "hf"), env, tmp).seconds
            if round_:
                times["ours"].append(ours)
                times["curl"].append(curl)
                times["snapshot"].append(snap)
        fresh(tmp / "curl")
        (tmp / "curl").mkdir()
        curl_synced = run_all(curls, env, tmp) + _timed(os.sync)
    ours, curl, snap = (median(times[k]) for k in ("ours", "curl", "snapshot"))
    label = f"cold sync, 3 x {_size(sizes[0])}"
    return [
        Row(label, f"{ours:.2f} s ({mbps(total, ours)}; {runs(times['ours'])})",
            f"curl -o: {curl:.2f} s ({mbps(total, curl)}; {runs(times['curl'])})",
            f"{curl / ours:.2f}x", ">= 0.9x", curl / ours >= 0.9),
        Row(label, f"{ours:.2f} s", f"snapshot_download: {snap:.2f} s ({mbps(total, snap)})",
            f"{snap / ours:.2f}x", ">= 1.5x", snap / ours >= 1.5),
        Row(label + " (info)", f"{ours:.2f} s (fsynced)",
            f"curl -o then sync(1): {curl_synced:.2f} s (1 run)", f"{curl_synced / ours:.2f}x", "-", True),
    ]  # fmt: skip


def capped(config: Config) -> list[Row]:
    tmp, repo = config.tmp / "capped", "bench/capped-GGUF"
    size = config.size(2 * GiB)
    commit, names = publish(tmp / "root", repo, [size], tmp / "work")
    project = project_for(tmp / "project", repo, names)
    times: dict[str, list[float]] = {"ours": [], "aria2c": [], "snapshot": []}
    rss: list[int] = []
    with mirror(tmp / "root", "bandwidth=50MB,on=cdn") as endpoint:
        env = env_for(endpoint, tmp)
        run(alex("lock"), env, project)
        url = resolve_url(endpoint, repo, commit, names[0])
        aria = [
            "aria2c",
            "-x8",
            "-s8",
            "-q",
            "--file-allocation=falloc",
            "-d",
            str(tmp / "aria"),
            "-o",
            names[0],
            url,
        ]
        for round_ in range(config.runs + 1):  # round 0 warms up
            fresh(tmp / "store")
            sample = run(alex("sync", "--frozen", "--quiet"), env, project)
            fresh(tmp / "aria")
            aria_seconds = run(aria, env, tmp).seconds
            if round_:
                times["ours"].append(sample.seconds)
                rss.append(sample.max_rss)
                times["aria2c"].append(aria_seconds)
        for _ in range(config.snapshot_runs):  # the slow peer: ~43 s a run at full size
            fresh(tmp / "hf")
            times["snapshot"].append(run(snapshot_download(repo, commit, tmp / "hf"), env, tmp).seconds)
    ours, aria2c, snap = (median(times[k]) for k in ("ours", "aria2c", "snapshot"))
    label = f"cold sync, 1 x {_size(size)}, 50 MB/s per connection"
    peak = max(rss)
    return [
        Row(label, f"{ours:.2f} s ({mbps(size, ours)}; {runs(times['ours'])})",
            f"snapshot_download: {snap:.2f} s ({mbps(size, snap)}, {config.snapshot_runs} run(s))",
            f"{snap / ours:.2f}x", ">= 4x", snap / ours >= 4),
        Row(label, f"{ours:.2f} s",
            f"aria2c -x8 -s8: {aria2c:.2f} s ({mbps(size, aria2c)}; {runs(times['aria2c'])})",
            f"{aria2c / ours:.2f}x", ">= 1.0x", aria2c / ours >= 1.0),
        Row("peak RSS of that sync", f"{peak / 1e6:.0f} MB (max of {len(rss)})", "-", "-", "<= 150 MB",
            peak <= 150e6),
    ]  # fmt: skip


def nginx_cold(config: Config) -> list[Row]:
    from nginx import nginx_cold  # noqa: PLC0415  (it imports this module's helpers)

    return nginx_cold(config)


def nginx_capped(config: Config) -> list[Row]:
    from nginx import nginx_capped  # noqa: PLC0415

    return nginx_capped(config)


def present(config: Config) -> tuple[Path, Path, dict[str, str], list[Path], int]:
    """A store that already holds 10 GiB (10 files), synced; the mirror is gone by then."""
    tmp, repo = config.tmp / "present", "bench/present-GGUF"
    if (tmp / "ready").exists():
        env = env_for("http://127.0.0.1:9", tmp)
        blobs = sorted(p for p in (tmp / "store" / "blobs").rglob("*") if p.is_file())
        return tmp, tmp / "project", env, blobs, sum(p.stat().st_size for p in blobs)
    sizes = [config.size(GiB)] * 10
    _, names = publish(tmp / "root", repo, sizes, tmp / "work")
    project = project_for(tmp / "project", repo, names)
    with mirror(tmp / "root") as endpoint:
        env = env_for(endpoint, tmp)
        run(alex("sync", "--quiet"), env, project)
    shutil.rmtree(tmp / "root")  # only the store's copy stays in the page cache
    (tmp / "ready").touch()
    return present(config)


def noop(config: Config) -> list[Row]:
    tmp, project, env, blobs, total = present(config)
    sync = alex("sync", "--frozen", "--quiet")
    run(sync, env, project)  # warm: the interpreter and the package, as on a host that syncs often
    ours = median([run(sync, env, project).seconds for _ in range(config.runs)])
    sha = median([run(["sha256sum", *blobs], env, tmp).seconds for _ in range(config.runs)])
    return [
        Row(f"no-op sync, {_size(total)} present", f"{ours:.2f} s (whole process)", f"sha256sum: {sha:.2f} s",
            f"{sha / ours:.0f}x", "<= 0.5 s", ours <= 0.5),
    ]  # fmt: skip


def verify(config: Config) -> list[Row]:
    tmp, project, env, blobs, total = present(config)
    run(["sha256sum", *blobs], env, tmp)  # the same page-cache state for both: as warm as it gets
    ours = median([run(alex("verify"), env, project).seconds for _ in range(config.runs)])
    sha = median([run(["sha256sum", *blobs], env, tmp).seconds for _ in range(config.runs)])
    return [
        Row(f"verify, {_size(total)}", f"{ours:.2f} s ({mbps(total, ours)})",
            f"sha256sum: {sha:.2f} s ({mbps(total, sha)})", f"{sha / ours:.2f}x", ">= 0.9x",
            sha / ours >= 0.9),
    ]  # fmt: skip


LOOP = """
import sys
from huggingface_hub import HfApi
api = HfApi()
for line in sys.stdin.read().split():
    repo, name = line.split(":")
    info = api.model_info(repo, revision="main")
    api.get_paths_info(repo, [name], revision=info.sha)
"""


def lock(config: Config) -> list[Row]:
    tmp = config.tmp / "lock"
    count = 50
    work = tmp / "work"
    work.mkdir(parents=True)
    source = write_tiny_gguf(work / "model-Q4_K_M.gguf")
    root = MirrorRoot(tmp / "root")
    repos = [f"bench/repo-{i:02d}-GGUF" for i in range(count)]
    for repo in repos:
        root.commit(repo, {"model-Q4_K_M.gguf": source})
    project = project_for(tmp / "project", repos[0], [])
    entries = "".join(f"  m{i:02d}: {{repo: {repo}, quant: Q4_K_M}}\n" for i, repo in enumerate(repos))
    (project / "models.yaml").write_text(f"version: 1\nmodels:\n{entries}")
    listing = tmp / "repos.txt"
    listing.write_text("".join(f"{repo}:model-Q4_K_M.gguf\n" for repo in repos))
    ours: list[float] = []
    loop: list[float] = []
    with mirror(tmp / "root", "latency=50ms,on=api") as endpoint:
        env = env_for(endpoint, tmp)
        for _ in range(config.runs):
            (project / "models.lock").unlink(missing_ok=True)
            ours.append(run(alex("lock"), env, project).seconds)
            with listing.open() as stdin:
                began = time.perf_counter()
                subprocess.run([sys.executable, "-c", LOOP], env=env, stdin=stdin, check=True)
                loop.append(time.perf_counter() - began)
    o, p = median(ours), median(loop)
    return [
        Row(f"lock, {count} repos, 50 ms per API request", f"{o:.2f} s (whole process)",
            f"model_info + get_paths_info loop: {p:.2f} s", f"{p / o:.1f}x", "<= 1 s, >= 10x",
            o <= 1 and p / o >= 10),
    ]  # fmt: skip


def help_(config: Config) -> list[Row]:
    env = dict(os.environ)
    runs = max(10, config.runs)
    ours = median([run(alex("--help"), env, config.tmp).seconds for _ in range(runs)])
    hf = median([run([BIN / "hf", "--help"], env, config.tmp).seconds for _ in range(runs)])
    return [
        Row("--help", f"{ours:.2f} s (median of {runs})", f"hf --help: {hf:.2f} s", f"{hf / ours:.1f}x",
            "<= 0.3 s", ours <= 0.3),
    ]  # fmt: skip


RUNNERS: dict[str, Callable[[Config], list[Row]]] = {
    "nginx": nginx_cold,
    "nginx-capped": nginx_capped,
    "cold": cold,
    "capped": capped,
    "noop": noop,
    "verify": verify,
    "lock": lock,
    "help": help_,
}


# -- report ------------------------------------------------------------------------------------------


def _timed(work: Callable[[], object]) -> float:
    began = time.perf_counter()
    work()
    return time.perf_counter() - began


def _size(size: int) -> str:
    return f"{size / GiB:.3g} GiB" if size >= GiB // 8 else f"{size / 2**20:.3g} MiB"


def _version(command: Sequence[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        return "not installed"
    return " ".join(out.split()[:3]) if out else "?"


def machine() -> str:
    cpu = "?"
    with Path("/proc/cpuinfo").open(encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    import huggingface_hub  # noqa: PLC0415

    import alex_models  # noqa: PLC0415

    return "\n".join(
        [
            f"- Date: {date.today().isoformat()}",
            f"- Machine: {os.cpu_count()} x {cpu}, {memory:.0f} GiB RAM, Linux {platform.release()}",
            f"- Python {platform.python_version()}, alex-models {alex_models.__version__}, "
            f"huggingface_hub {huggingface_hub.__version__}",
            f"- {_version(['curl', '--version'])}; {_version(['aria2c', '--version'])}; "
            f"{_version(['sha256sum', '--version'])}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"of {', '.join(SCENARIOS)}; default: all"
    )
    parser.add_argument("--runs", type=int, default=3, help="median of this many runs (default 3)")
    parser.add_argument(
        "--snapshot-runs", type=int, default=1, help="runs of snapshot_download when capped (default 1)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every file size by this")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where data is made")
    args = parser.parse_args()
    chosen = args.scenarios or list(SCENARIOS)
    if unknown := set(chosen) - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="alex-bench-", dir=args.dir) as tmp_name:
        config = Config(Path(tmp_name), args.runs, args.scale, args.snapshot_runs)
        for name in chosen:
            began = time.perf_counter()
            rows += RUNNERS[name](config)
            print(f"{name}: done in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    print(machine())
    print(f"- Command: `{' '.join(['.venv/bin/python', 'bench/suite.py', *sys.argv[1:]])}`\n")
    print("| scenario | alex-models | peer, same run | peer / ours | target | met |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        peer = row.peer.replace("|", "\\|")  # a pipeline's name, in a Markdown table
        print(f"| {row.scenario} | {row.ours} | {peer} | {row.ratio} | {row.target} | "
              f"{'yes' if row.met else '**no**'} |")  # fmt: skip


if __name__ == "__main__":
    main()
