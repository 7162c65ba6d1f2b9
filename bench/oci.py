"""A registry as remote and source against the clients OCI users pick, on one local registry, in
one run.

    .venv/bin/python bench/oci.py --dir /work                 # 2 GiB, 3 runs
    .venv/bin/python bench/oci.py --size 256MiB --runs 1      # a quick try

The registry is Debian's ``docker-registry`` (distribution 2.8) on loopback, its storage on disk
(tests/registrykit.py starts it). The model is pushed once by us; then, in rounds (each tool once
per round, in turn, after one unmeasured round):

==========  ===============================================================  ===================
sync-from   ``sync --frozen --from oci://… --no-hub`` into an empty store      >= 1.0x each peer
            (ranged GETs, every byte hashed); peers: ``skopeo copy`` to an
            OCI layout folder (checks each digest), ``oras pull`` (Python SDK)
push        ``push oci://…/push-N`` (a new repository each run, so every byte  >= 1.0x oras push
            goes); peer: ``oras push`` (Python SDK, hashes the file first)
rss         peak RSS of every ``sync --from`` and ``push``                     <= 150 MB
==========  ===============================================================  ===================

Every time is a whole process; earlier output is deleted and dirty pages flushed before each run.
Prints Markdown for docs/benchmarks.md, ratios taken within each round.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from fleet import one_model_project, parse_size
from suite import BIN, Sample, fresh, mbps, median, run

from alex_models.mirror import MirrorServer

# The tests' registry, started the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from registrykit import RegistryServer

ORAS_PULL = """
import sys, oras.client
oras.client.OrasClient(insecure=True).pull(target=sys.argv[1], outdir=sys.argv[2])
"""
ORAS_PUSH = """
import os, sys, oras.client
os.chdir(os.path.dirname(sys.argv[2]))  # oras names the layer by the path it is given
oras.client.OrasClient(insecure=True).push(target=sys.argv[1], files=[os.path.basename(sys.argv[2])])
"""


def version(command: list[str]) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--size", default="2GiB")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alex-oci-bench-", dir=args.dir) as scratch:
        bench(Path(scratch), parse_size(args.size), args.runs)


def bench(scratch: Path, size: int, runs: int) -> None:
    data, _, project, root = one_model_project(scratch, size)
    size = data.stat().st_size
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "DOCKER_", "REGISTRY_"))}
    env |= {"DOCKER_CONFIG": str(scratch / "docker"), "HOME": str(scratch / "home")}
    ci = {**env, "ALEX_MODELS_HOME": str(scratch / "ci-store")}
    with MirrorServer(root.root, host="127.0.0.1") as mirror:  # to lock and fill CI's store once
        hub = {"HF_ENDPOINT": mirror.url, "HF_HOME": str(scratch / "hf")}
        run([BIN / "alex-models", "sync"], {**ci, **hub}, project)
    env["HF_ENDPOINT"] = ci["HF_ENDPOINT"] = "http://127.0.0.1:9"  # nothing may come from a Hub
    registry = RegistryServer(scratch / "registry").start()
    try:
        run([BIN / "alex-models", "push", registry.url("bench/model")], ci, project)
        report(scratch, project, env, ci, registry, size, runs)
    finally:
        registry.stop()


def report(
    scratch: Path, project: Path, env: dict[str, str], ci: dict[str, str], registry: RegistryServer,
    size: int, runs: int,
) -> None:  # fmt: skip
    store, out = scratch / "host-store", scratch / "out"
    load_before = version(["uptime"])
    reference = f"{registry.host}/bench/model:big"
    counter = iter(range(10**6))

    def ours() -> Sample:
        fresh(store)
        sync = ["sync", "--frozen", "--from", registry.url("bench/model"), "--no-hub", "-q"]
        return run([BIN / "alex-models", *sync], {**env, "ALEX_MODELS_HOME": str(store)}, project)

    def skopeo() -> Sample:
        fresh(out)
        copy = ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{reference}", f"oci:{out}:big"]
        return run(copy, env, scratch)

    def oras_pull() -> Sample:
        fresh(out)
        return run([sys.executable, "-c", ORAS_PULL, reference, out], env, scratch)

    def push() -> Sample:
        os.sync()
        return run([BIN / "alex-models", "push", registry.url(f"bench/push-{next(counter)}")], ci, project)

    def oras_push() -> Sample:
        os.sync()
        target = f"{registry.host}/bench/oras-{next(counter)}:big"
        return run([sys.executable, "-c", ORAS_PUSH, target, scratch / "model-Q4_K_M.gguf"], env, scratch)

    steps = {"sync-from": ours, "skopeo copy": skopeo, "oras pull": oras_pull, "push": push,
             "oras push": oras_push}  # fmt: skip
    measured: dict[str, list[Sample]] = {name: [] for name in steps}
    for round_ in range(runs + 1):  # each tool once per round, in turn; round 0 is not counted
        for name, step in steps.items():
            sample = step()
            if round_:
                measured[name].append(sample)

    def ratio(peer: str, ours_: str) -> str:
        pairs = [p.seconds / o.seconds for p, o in zip(measured[peer], measured[ours_], strict=True)]
        return f"{median(pairs):.2f}x (rounds {', '.join(f'{r:.2f}' for r in pairs)})"

    print(f"- Date: {date.today()}; {platform.platform()}; Python {platform.python_version()}")
    print(f"- Load before: {load_before}")
    print(f"- {version(['docker-registry', '--version'])}; {version(['skopeo', '--version'])}")
    print(f"- Size: {size / 1024**3:.2f} GiB, median of {runs} rounds after one unmeasured round")
    print()
    print("| scenario | time (s) | throughput | runs (s) | peak RSS |")
    print("| --- | --- | --- | --- | --- |")
    for name, samples in measured.items():
        seconds = median([s.seconds for s in samples])
        rss = max(s.max_rss for s in samples) / 1e6
        spread = ", ".join(f"{s.seconds:.2f}" for s in samples)
        print(f"| {name} | {seconds:.2f} | {mbps(size, seconds)} | {spread} | {rss:.0f} MB |")
    print()
    print(f"- sync-from vs skopeo copy (peer time / ours, same round): {ratio('skopeo copy', 'sync-from')}")
    print(f"- sync-from vs oras pull: {ratio('oras pull', 'sync-from')}")
    print(f"- push vs oras push: {ratio('oras push', 'push')}")
    print(f"- Load after: {version(['uptime'])}")


if __name__ == "__main__":
    main()
