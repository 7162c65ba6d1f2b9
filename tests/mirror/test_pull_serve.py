"""``mirror serve --store`` with pull-through, seen by clients nobody here wrote: a store that has
the lock but none of its blobs, in front of the fixture mirror as upstream (with its fault knobs);
the real ``huggingface_hub`` downloads through it, and ``alex-models lock`` resolves against it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from helpers import (
    CLI,
    cdn_gets,
    console_script,
    mirror_process,
    progress_done,
    settled_log,
    sha256,
    since_settled,
    small_disk,
    wait_for,
    write_manifest,
)
from huggingface_hub import hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError

from alex_models import api
from alex_models._retry import RetryPolicy
from alex_models.download import DownloadOptions
from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord
from alex_models.mirror.pullthrough import PullStats, PullThrough
from alex_models.mirror.store_catalogue import StoreCatalogue
from alex_models.mirror.upstream import pull_missing
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_gguf

REPO = "org/pulled"
GGUF = "pulled-Q4_K_M.gguf"
MiB = 1024 * 1024
MODELS: dict[str, dict[str, object]] = {
    "chat": {"repo": REPO, "quant": "Q4_K_M"},
    "extras": {"repo": REPO, "files": ["config.json"]},
}


@dataclass(frozen=True)
class Cold:
    """A lock of REPO on the fixture mirror (``upstream``), a store without its blobs, and the
    store's mirror (``server``) pulling through from upstream."""

    upstream: MirrorServer
    server: MirrorServer
    store: Store
    pull: PullThrough
    project: Path
    files: dict[str, bytes]
    lines: list[str]


def publish_and_lock(
    mirror_root: MirrorRoot, upstream: MirrorServer, project: Path, tmp_path: Path, token: str | None = None
) -> tuple[dict[str, bytes], Store]:
    """REPO committed upstream (private to ``token`` if given) and locked in ``project``; an empty store."""
    files = {
        GGUF: write_tiny_gguf(tmp_path / "m.gguf", padding=2 * MiB).read_bytes(),
        "config.json": b'{"model_type": "llama"}\n',
    }
    if token is not None:
        mirror_root.create_repo(REPO, private=True, tokens=[token])
    mirror_root.commit(REPO, files)
    write_manifest(project, MODELS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_ENDPOINT", upstream.url)
        if token is not None:
            patch.setenv("HF_TOKEN", token)
        api.lock(project / "models.yaml")  # lock first; nothing is synced
    return files, Store(tmp_path / "store").init()


@pytest.fixture
def cold(mirror_root: MirrorRoot, mirror: MirrorServer, project: Path, tmp_path: Path) -> Iterator[Cold]:
    files, store = publish_and_lock(mirror_root, mirror, project, tmp_path)
    lines: list[str] = []
    # One attempt: an upstream that fails once stays failed for the request that met it.
    options = DownloadOptions(retry=RetryPolicy(attempts=1))
    with PullThrough(store, mirror.url, None, options=options, log=lines.append) as pull:
        catalogue = StoreCatalogue(store, [project / "models.lock"], fetch_missing=pull_missing(pull))
        with MirrorServer(catalogue, pull_stats=pull.stats) as server:
            yield Cold(mirror, server, store, pull, project, files, lines)


def download(cold: Cold, cache: Path, name: str = GGUF) -> Path:
    return Path(hf_hub_download(REPO, name, cache_dir=cache, endpoint=cold.server.url, token=False))


def upstream_sent(log: list[RequestRecord]) -> int:
    return sum(record.bytes_sent for record in cdn_gets(log, GGUF))


def metric(server: MirrorServer, name: str) -> int:
    text = httpx2.get(f"{server.url}/metrics", trust_env=False).text
    [line] = [line for line in text.splitlines() if line.startswith(f"alex_models_mirror_{name} ")]
    return int(line.split()[1])


def test_hf_hub_download_of_a_cold_file_is_pulled_through_once_and_stored_verified(
    cold: Cold, tmp_path: Path
) -> None:
    size = len(cold.files[GGUF])
    got = download(cold, tmp_path / "hf")
    again = download(cold, tmp_path / "hf-other")  # the store serves it now

    assert got.read_bytes() == again.read_bytes() == cold.files[GGUF]
    assert cold.store.has_blob(sha256(cold.files[GGUF]), size)
    log = since_settled(cold.upstream)
    assert len(cdn_gets(log, GGUF)) == 1
    assert cold.pull.stats() == PullStats(fetches=1, upstream_bytes=size, joined=0, hits=0, failures=0)
    assert metric(cold.server, "upstream_bytes_total") == size
    assert metric(cold.server, "upstream_fetches_total") == 1
    assert metric(cold.server, "upstream_failures_total") == 0
    assert cold.lines == [f"pull-through: {REPO}/{GGUF} stored, 2.1 MB from {cold.upstream.url}"]


@pytest.mark.slow
def test_snapshot_download_pulls_every_locked_file_through(cold: Cold, tmp_path: Path) -> None:
    folder = Path(snapshot_download(REPO, cache_dir=tmp_path / "hf", endpoint=cold.server.url, token=False))

    assert {p.name: p.read_bytes() for p in folder.iterdir()} == cold.files
    for data in cold.files.values():
        assert cold.store.has_blob(sha256(data), len(data))


@pytest.mark.slow
def test_lock_against_the_pull_through_mirror_pins_what_upstream_pins(
    cold: Cold, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    write_manifest(other, MODELS)
    monkeypatch.setenv("HF_ENDPOINT", cold.server.url)
    api.lock(other / "models.yaml")

    assert (other / "models.lock").read_text() == (cold.project / "models.lock").read_text()
    assert cold.pull.stats().fetches == 0  # locking reads metadata and the lock's hashes, no bytes


@pytest.mark.slow
def test_eight_hf_clients_of_one_cold_file_cost_upstream_one_file(cold: Cold, tmp_path: Path) -> None:
    size = len(cold.files[GGUF])
    cold.upstream.faults.add("bandwidth=4MB,on=cdn")  # half a second in flight: all eight ask meanwhile
    together = threading.Barrier(8)

    def client(n: int) -> bytes:
        together.wait()
        return download(cold, tmp_path / f"hf-{n}").read_bytes()

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(client, range(8)))

    assert got == [cold.files[GGUF]] * 8
    log = settled_log(cold.upstream, lambda log: upstream_sent(log) >= size, "the file's bytes")
    assert upstream_sent(log) <= 1.05 * size
    assert cold.pull.stats().fetches == 1


def test_upstream_down_mid_file_is_an_error_to_the_client_and_the_next_request_resumes(
    cold: Cold, tmp_path: Path
) -> None:
    size = len(cold.files[GGUF])
    sha = sha256(cold.files[GGUF])
    cold.upstream.faults.add("drop-after=1MB,times=1,on=cdn")

    with pytest.raises(HfHubHTTPError) as failed:
        download(cold, tmp_path / "hf")

    assert failed.value.response is not None
    assert failed.value.response.status_code == 502
    assert "the mirror could not fetch it from upstream" in str(failed.value)
    assert not cold.store.blob_path(sha).exists()
    assert 0 < progress_done(cold.store.progress_path(sha)) < size  # what arrived is kept, unnamed
    assert not any((tmp_path / "hf").rglob(sha))  # the client stored nothing

    assert download(cold, tmp_path / "hf").read_bytes() == cold.files[GGUF]
    log = settled_log(cold.upstream, lambda log: len(cdn_gets(log, GGUF)) == 2, "the resumed GET")
    assert upstream_sent(log) <= 1.05 * size  # resumed, not fetched again
    assert cold.pull.stats().failures == 1


def test_wrong_bytes_from_upstream_are_never_served_nor_stored_and_the_log_says_so(
    cold: Cold, tmp_path: Path
) -> None:
    sha = sha256(cold.files[GGUF])
    cold.upstream.faults.add("corrupt,times=2,on=cdn")  # the downloader tries twice, then gives up

    with pytest.raises(HfHubHTTPError) as failed:
        download(cold, tmp_path / "hf")

    assert failed.value.response is not None
    assert failed.value.response.status_code == 502
    assert "upstream sent other bytes than the lock pins" in str(failed.value)
    assert not cold.store.blob_path(sha).exists()
    assert not cold.store.partial_path(sha).exists()
    assert not any((tmp_path / "hf").rglob(sha))
    served = settled_log(cold.server, lambda log: bool(cdn_gets(log, GGUF)), "the refused GET")
    assert [(r.status, r.cache) for r in cdn_gets(served, GGUF)] == [(502, "miss")]
    assert len(cold.lines) == 1
    assert cold.lines[0].startswith(f"pull-through: {REPO}/{GGUF} from {cold.upstream.url} failed (exit 3): ")

    assert download(cold, tmp_path / "hf").read_bytes() == cold.files[GGUF]  # the next request retries


@pytest.mark.linux("a tmpfs mount, for a small disk")
def test_a_store_without_room_for_the_file_is_a_503_that_names_no_folder_of_the_mirror(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files, _ = publish_and_lock(mirror_root, mirror, project, tmp_path)
    lines: list[str] = []
    with small_disk(tmp_path / "small-disk", MiB, monkeypatch) as disk:  # the GGUF is 2 MiB
        store = Store(disk).init()
        with PullThrough(store, mirror.url, None, log=lines.append) as pull:
            catalogue = StoreCatalogue(store, [project / "models.lock"], fetch_missing=pull_missing(pull))
            with MirrorServer(catalogue) as server, pytest.raises(HfHubHTTPError) as failed:
                hf_hub_download(REPO, GGUF, cache_dir=tmp_path / "hf", endpoint=server.url, token=False)

        assert failed.value.response is not None
        assert failed.value.response.status_code == 503
        assert f"{REPO}/{GGUF}: the mirror cannot fetch it now; its log says why" in str(failed.value)
        assert str(disk) not in str(failed.value)
        assert not store.blob_path(sha256(files[GGUF])).exists()
    assert len(lines) == 1
    assert f"failed (exit 1): no space for {REPO}/{GGUF}" in lines[0]
    assert cdn_gets(since_settled(mirror), GGUF) == []  # refused before asking upstream for a byte


# -- the command: `alex-models mirror serve --store` as a process ----------------------------------

UPSTREAM_TOKEN = "hf_mirror_own_token_1234"


def serve_store(home: Path, lock: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], str]:
    command = [
        str(CLI),
        "mirror",
        "serve",
        "--store",
        str(home),
        "--lock",
        str(lock),
        "--port",
        "0",
        "--cdn-port",
        "0",
    ]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return mirror_process([*command, *args])


def hf_download(url: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """The real ``hf`` CLI, with no token of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_ENDPOINT")}
    env |= {"HF_ENDPOINT": url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.run(
        [str(console_script("hf")), "download", REPO, GGUF, "--cache-dir", str(cache)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def metrics_of(url: str) -> dict[str, int]:
    text = httpx2.get(f"{url}/metrics", trust_env=False).text
    return {
        line.split()[0]: int(line.split()[1])
        for line in text.splitlines()
        if line.startswith("alex_models_mirror_upstream_")
    }


@pytest.mark.slow
def test_hf_cli_through_mirror_serve_pulls_from_hf_endpoint_with_the_mirrors_own_token(
    mirror_root: MirrorRoot, mirror: MirrorServer, project: Path, tmp_path: Path
) -> None:
    """No --upstream: HF_ENDPOINT names it, HF_TOKEN is the mirror's, the clients send none. Wrong
    bytes upstream first: the client fails, the log says why; then the next download gets the file."""
    files, store = publish_and_lock(mirror_root, mirror, project, tmp_path, token=UPSTREAM_TOKEN)
    size, sha = len(files[GGUF]), sha256(files[GGUF])
    log_path = tmp_path / "access.log"
    env = {"HF_ENDPOINT": mirror.url, "HF_TOKEN": UPSTREAM_TOKEN}
    process, url = serve_store(store.home, project / "models.lock", env, "--access-log", str(log_path))
    try:
        mirror.faults.add("corrupt,times=2,on=cdn")
        refused = hf_download(url, tmp_path / "hf")
        assert refused.returncode != 0
        assert "upstream sent other bytes than the lock pins" in refused.stderr
        assert not store.blob_path(sha).exists()

        done = hf_download(url, tmp_path / "hf")
        assert done.returncode == 0, done.stderr
        printed = done.stdout.strip().splitlines()[-1].strip().removeprefix("path:").strip()
        assert Path(printed).read_bytes() == files[GGUF]
        assert store.has_blob(sha, size)
        counters = metrics_of(url)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 143
    assert counters == {
        "alex_models_mirror_upstream_bytes_total": 3 * size,  # two wrong copies, then the right one
        "alex_models_mirror_upstream_fetches_total": 2,
        "alex_models_mirror_upstream_joined_total": 0,
        "alex_models_mirror_upstream_failures_total": 1,
    }
    upstream_gets = cdn_gets(since_settled(mirror), GGUF)
    assert len(upstream_gets) == 3
    assert all(r.authorization is False for r in upstream_gets)  # the CDN hop drops it, as on the Hub
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    events = [r["message"] for r in records if r.get("event") == "pull-through"]
    assert len(events) == 2
    assert events[0].startswith(f"pull-through: {REPO}/{GGUF} from {mirror.url} failed (exit 3): ")
    assert events[1] == f"pull-through: {REPO}/{GGUF} stored, 2.1 MB from {mirror.url}"
    served = [(r["status"], r["cache"]) for r in records if r.get("origin") == "cdn"]
    assert served == [(502, "miss"), (200, "hit")]
    assert UPSTREAM_TOKEN not in log_path.read_text() + stderr


@pytest.mark.slow
@pytest.mark.posix("SIGTERM delivered to a child")
def test_sigterm_stops_a_pull_through_in_flight_and_keeps_what_arrived(
    mirror_root: MirrorRoot, mirror: MirrorServer, project: Path, tmp_path: Path
) -> None:
    files, store = publish_and_lock(mirror_root, mirror, project, tmp_path)
    sha = sha256(files[GGUF])
    mirror.faults.add("bandwidth=256KB,on=cdn")  # eight seconds for the whole file
    process, url = serve_store(store.home, project / "models.lock", {}, "--upstream", mirror.url, "-q")
    client = subprocess.Popen(
        [sys.executable, "-c", "import sys; from huggingface_hub import hf_hub_download as d; "
         "d(sys.argv[1], sys.argv[2], endpoint=sys.argv[3], cache_dir=sys.argv[4], token=False)",
         REPO, GGUF, url, str(tmp_path / "hf")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: metrics_of(url)["alex_models_mirror_upstream_bytes_total"] > 0, "the pull to start")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
        _, client_err = client.communicate(timeout=60)
    finally:
        for running in (process, client):
            if running.poll() is None:
                running.kill()
    assert process.returncode == 143
    assert stderr.splitlines()[-1] == f"stopped serving {url}; every request in flight finished"
    assert client.returncode != 0
    assert "the mirror could not fetch it from upstream" in client_err
    assert not store.blob_path(sha).exists()
    assert 0 < progress_done(store.progress_path(sha)) < len(files[GGUF])  # kept for the next start


@pytest.mark.slow
def test_a_pull_longer_than_the_clients_read_timeout_is_waited_out_by_its_retries(
    cold: Cold, tmp_path: Path
) -> None:
    """huggingface_hub gives up on a silent GET after HF_HUB_DOWNLOAD_TIMEOUT and asks again; each
    retry joins the one pull, and the client gets the file once it is verified."""
    cold.upstream.faults.add("bandwidth=700KB,on=cdn")  # three seconds in flight, a 1 s read timeout
    script = (
        "import sys; from huggingface_hub import hf_hub_download as d; "
        "print(d(sys.argv[1], sys.argv[2], endpoint=sys.argv[3], cache_dir=sys.argv[4], token=False))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, REPO, GGUF, cold.server.url, str(tmp_path / "hf")],
        env={**os.environ, "HF_HUB_DOWNLOAD_TIMEOUT": "1"}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert run.returncode == 0, run.stderr
    assert "Trying to resume download" in run.stderr  # it did time out, and came back
    assert Path(run.stdout.strip()).read_bytes() == cold.files[GGUF]
    stats = cold.pull.stats()
    assert (stats.fetches, stats.failures) == (1, 0)
    assert stats.joined >= 1
