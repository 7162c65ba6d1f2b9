"""Pull-through: a locked file the store lacks, fetched once from upstream (the fixture mirror,
with its fault knobs) by the downloader, verified against the lock, promoted into a real store;
real threads, a real second process, a real small disk."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from faultkit import MB
from helpers import (
    cdn_gets,
    fill,
    progress_done,
    settled_log,
    sha256,
    sha_file,
    since_settled,
    small_disk,
    wait_for,
)

from alex_models._retry import RetryPolicy
from alex_models._units import human_size
from alex_models.download import DownloadOptions
from alex_models.errors import AlexModelsError, IntegrityError, RemoteError, UserError
from alex_models.lock import LockedFile
from alex_models.mirror import MirrorRoot, MirrorServer, RequestRecord
from alex_models.mirror.pullthrough import PullStats, PullThrough
from alex_models.store import Store
from alex_models.tinymodels import write_tiny_gguf

REPO = "org/cold"
NAME = "cold-Q4_K_M.gguf"
LABEL = f"{REPO}/{NAME}"
TOKEN = "hf_upstream_secret_789"
MiB = 1024 * 1024


@dataclass(frozen=True)
class Upstream:
    """One GGUF committed on the fixture mirror, and its lock entry."""

    server: MirrorServer
    commit: str
    file: LockedFile


@pytest.fixture
def publish(mirror_root: MirrorRoot, mirror: MirrorServer, tmp_path: Path) -> Callable[..., Upstream]:
    def publish(size: int, *, private: bool = False) -> Upstream:
        made = write_tiny_gguf(tmp_path / NAME, padding=size)
        data = made.read_bytes()
        if private:
            mirror_root.create_repo(REPO, private=True, tokens=[TOKEN])
        commit = mirror_root.commit(REPO, {NAME: made})
        return Upstream(
            mirror, commit, LockedFile(path=NAME, role="model", size=len(data), sha256=sha256(data))
        )

    return publish


def sent(log: list[RequestRecord]) -> int:
    """Bytes of the file upstream sent: its CDN's GETs."""
    return sum(record.bytes_sent for record in cdn_gets(log, NAME))


def upstream_log(up: Upstream) -> list[RequestRecord]:
    """Every request upstream has logged, once the file's bytes it sent are all in the log."""
    settled_log(up.server, lambda log: sent(log) > 0, "the file's bytes")
    return since_settled(up.server)


def one_attempt() -> DownloadOptions:
    """Upstream that fails once has failed: no retry, so a drop is as if it stayed down."""
    return DownloadOptions(retry=RetryPolicy(attempts=1))


def test_eight_callers_of_a_cold_file_wait_on_one_upstream_download(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(2 * MB)
    up.server.faults.add("bandwidth=4MB,on=cdn")  # half a second in flight: all eight arrive meanwhile
    size = up.file.size
    lines: list[str] = []
    together = threading.Barrier(8)

    def caller() -> Path:
        together.wait()
        return pull.fetch(REPO, up.commit, up.file)

    with PullThrough(store, up.server.url, None, log=lines.append) as pull, ThreadPoolExecutor(8) as pool:
        paths = [future.result() for future in [pool.submit(caller) for _ in range(8)]]
        during = pull.stats()
        again = pull.fetch(REPO, up.commit, up.file)
        after = pull.stats()

    assert set(paths) == {again} == {store.blob_path(up.file.sha256)}
    assert sha_file(again) == up.file.sha256
    log = upstream_log(up)
    assert len(cdn_gets(log)) == 1
    assert sent(log) <= 1.05 * size
    assert during == PullStats(fetches=1, upstream_bytes=size, joined=7, hits=0, failures=0)
    assert after == PullStats(fetches=1, upstream_bytes=size, joined=7, hits=1, failures=0)
    assert lines == [f"pull-through: {LABEL} stored, {human_size(size)} from {up.server.url}"]


@pytest.mark.slow
def test_a_second_process_on_the_store_waits_on_the_download_and_reuses_it(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(3 * MB)
    up.server.faults.add("bandwidth=1MB,on=cdn")  # three seconds in flight
    other = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from alex_models.lock import LockedFile\n"
        "from alex_models.mirror.pullthrough import PullThrough\n"
        "from alex_models.store import Store\n"
        "home, url, commit, file = sys.argv[1:]\n"
        "with PullThrough(Store(Path(home)), url, None) as pull:\n"
        "    path = pull.fetch('org/cold', commit, LockedFile.model_validate_json(file))\n"
        "    print(json.dumps({'path': str(path), **vars(pull.stats())}))\n"
    )

    with PullThrough(store, up.server.url, None, log=lambda line: None) as pull:
        first = threading.Thread(target=pull.fetch, args=(REPO, up.commit, up.file))
        first.start()
        wait_for(lambda: progress_done(store.progress_path(up.file.sha256)) > 0, "the first bytes")
        second = subprocess.run(
            [
                sys.executable,
                "-c",
                other,
                str(store.home),
                up.server.url,
                up.commit,
                up.file.model_dump_json(),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        first.join()
        ours = pull.stats()

    assert second.returncode == 0, second.stderr
    theirs = json.loads(second.stdout)
    assert theirs == {
        "path": str(store.blob_path(up.file.sha256)),
        **vars(PullStats(fetches=0, upstream_bytes=0, joined=1, hits=0, failures=0)),
    }
    assert ours == PullStats(fetches=1, upstream_bytes=up.file.size, joined=0, hits=0, failures=0)
    assert sent(upstream_log(up)) <= 1.05 * up.file.size


def test_upstream_gone_mid_file_is_a_network_error_storing_nothing_and_the_next_fetch_resumes(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(3 * MB)
    up.server.faults.add("drop-after=1MB,on=cdn")
    lines: list[str] = []

    with PullThrough(store, up.server.url, None, options=one_attempt(), log=lines.append) as pull:
        with pytest.raises(RemoteError) as failed:
            pull.fetch(REPO, up.commit, up.file)
        assert failed.value.exit_code == 4
        assert not store.blob_path(up.file.sha256).exists()
        kept = progress_done(store.progress_path(up.file.sha256))
        assert kept == 1_000_000

        up.server.faults.clear()
        path = pull.fetch(REPO, up.commit, up.file)
        stats = pull.stats()

    assert sha_file(path) == up.file.sha256
    first, retry = cdn_gets(upstream_log(up), NAME)
    assert retry.range == f"bytes={kept}-{up.file.size - 1}"
    assert first.bytes_sent + retry.bytes_sent == up.file.size
    assert stats == PullStats(fetches=2, upstream_bytes=up.file.size, joined=0, hits=0, failures=1)
    assert lines[0].startswith(f"pull-through: {LABEL} from {up.server.url} failed (exit 4): ")
    assert lines[1] == f"pull-through: {LABEL} stored, {human_size(up.file.size)} from {up.server.url}"


@pytest.mark.slow
def test_upstream_that_drops_mid_file_then_answers_503_fails_after_its_retries_and_the_next_fetch_resumes(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(3 * MB)
    up.server.faults.add("bandwidth=1MB,on=cdn")
    up.server.faults.add("drop-after=1MB,on=cdn,times=1")
    options = DownloadOptions(retry=RetryPolicy(attempts=3, base=0.05))
    outcome: list[RemoteError] = []

    def caller() -> None:
        try:
            pull.fetch(REPO, up.commit, up.file)
        except RemoteError as error:
            outcome.append(error)

    with PullThrough(store, up.server.url, None, options=options, log=lambda line: None) as pull:
        fetching = threading.Thread(target=caller)
        fetching.start()
        record = store.progress_path(up.file.sha256)
        wait_for(lambda: progress_done(record) > 0, "the first bytes")
        up.server.faults.add("status=503")  # down: every request from now on, until cleared
        fetching.join(timeout=30)
        [error] = outcome
        assert error.exit_code == 4
        assert "gave up on" in error.message
        assert not store.blob_path(up.file.sha256).exists()
        kept = progress_done(record)

        up.server.faults.clear()
        path = pull.fetch(REPO, up.commit, up.file)
        stats = pull.stats()

    assert sha_file(path) == up.file.sha256
    assert kept == 1_000_000
    retry = cdn_gets(upstream_log(up), NAME)[-1]
    assert retry.range == f"bytes={kept}-{up.file.size - 1}"
    assert stats == PullStats(fetches=2, upstream_bytes=up.file.size, joined=0, hits=0, failures=1)


def test_wrong_bytes_from_upstream_are_an_integrity_error_and_never_stored(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(MB)
    up.server.faults.add("corrupt,on=cdn")
    lines: list[str] = []
    together = threading.Barrier(2)

    def caller() -> AlexModelsError:
        together.wait()
        with pytest.raises(IntegrityError) as failed:
            pull.fetch(REPO, up.commit, up.file)
        return failed.value

    with PullThrough(store, up.server.url, None, log=lines.append) as pull, ThreadPoolExecutor(2) as pool:
        errors = [future.result() for future in [pool.submit(caller) for _ in range(2)]]
        stats = pull.stats()

    assert {error.exit_code for error in errors} == {3}
    assert not store.blob_path(up.file.sha256).exists()
    assert list((store.home / "tmp").iterdir()) == []
    assert stats.failures == 1
    [line] = lines
    assert line.startswith(
        f"pull-through: {LABEL} from {up.server.url} failed (exit 3): {LABEL}: downloaded "
    )
    assert f"the lock says {up.file.sha256}" in line


def test_a_lock_that_pins_other_bytes_than_upstream_announces_fetches_nothing(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(MB)
    other = up.file.model_copy(update={"sha256": sha256(b"other bytes")})

    said = f"the server says this file's SHA256 is {up.file.sha256}"
    with (
        PullThrough(store, up.server.url, None, log=lambda line: None) as pull,
        pytest.raises(IntegrityError, match=said),
    ):
        pull.fetch(REPO, up.commit, other)

    assert cdn_gets(since_settled(up.server)) == []
    assert list((store.home / "tmp").iterdir()) == []


def test_the_upstream_token_goes_to_upstream_only_and_into_no_log_line_or_message(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(MB, private=True)
    up.server.faults.add("corrupt,on=cdn,times=2")  # one failed fetch (a first try, then a second)
    lines: list[str] = []

    with PullThrough(store, up.server.url, TOKEN, log=lines.append) as pull:
        with pytest.raises(IntegrityError) as failed:
            pull.fetch(REPO, up.commit, up.file)
        path = pull.fetch(REPO, up.commit, up.file)
        shown = repr(pull)

    assert sha_file(path) == up.file.sha256
    log = since_settled(up.server)
    resolves = [r for r in log if r.origin == "api" and "/resolve/" in r.path]
    assert resolves
    assert all(r.authorization for r in resolves)
    assert not any(r.authorization for r in cdn_gets(log))  # another origin: as the Hub's CDN
    assert len(lines) == 2
    for text in (*lines, str(failed.value), shown):
        assert TOKEN not in text


def test_a_private_upstream_repo_without_the_token_is_refused_with_a_hint(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(MB, private=True)

    with (
        PullThrough(store, up.server.url, None, log=lambda line: None) as pull,
        pytest.raises(AlexModelsError) as refused,
    ):
        pull.fetch(REPO, up.commit, up.file)

    assert refused.value.exit_code == 1
    assert "HF_TOKEN" in str(refused.value.hint)


def test_an_upstream_url_with_credentials_in_it_is_refused(store: Store) -> None:
    with pytest.raises(UserError, match="the upstream URL holds credentials"):
        PullThrough(store, f"https://user:{TOKEN}@hub.example", None)


def test_close_stops_a_download_in_flight_and_returns_once_it_has_kept_what_arrived(
    publish: Callable[..., Upstream], store: Store
) -> None:
    up = publish(2 * MB)
    up.server.faults.add("bandwidth=1MB,on=cdn")
    outcome: list[BaseException] = []

    def caller() -> None:
        try:
            pull.fetch(REPO, up.commit, up.file)
        except RemoteError as error:
            outcome.append(error)

    pull = PullThrough(store, up.server.url, None, log=lambda line: None)
    fetching = threading.Thread(target=caller)
    fetching.start()
    wait_for(lambda: progress_done(store.progress_path(up.file.sha256)) > 0, "the first bytes")
    pull.close()

    [error] = outcome  # close() returned once the download had stopped
    fetching.join()
    assert str(error).startswith(f"{LABEL}: the mirror stopped while fetching it from {up.server.url}")
    assert not store.blob_path(up.file.sha256).exists()
    assert progress_done(store.progress_path(up.file.sha256)) > 0


@pytest.mark.linux("a tmpfs mount, for a small disk")
def test_a_disk_too_small_for_the_file_is_one_clear_error_before_any_byte(
    publish: Callable[..., Upstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = publish(2 * MB)

    with small_disk(tmp_path / "small-disk", MiB, monkeypatch) as disk:
        store = Store(disk)
        with (
            PullThrough(store, up.server.url, None, log=lambda line: None) as pull,
            pytest.raises(UserError) as full,
        ):
            pull.fetch(REPO, up.commit, up.file)

        assert full.value.message.startswith(
            f"no space for {LABEL}: {human_size(up.file.size)} needed in {disk / 'tmp'}"
        )
        assert not store.blob_path(up.file.sha256).exists()
    assert cdn_gets(since_settled(up.server)) == []


@pytest.mark.slow
@pytest.mark.linux("a tmpfs mount, for a small disk")
def test_a_disk_that_fills_while_pulling_through_is_one_clear_error_and_nothing_under_a_final_name(
    publish: Callable[..., Upstream], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = publish(3 * MB)
    up.server.faults.add("bandwidth=1MB,on=cdn")
    outcome: list[BaseException] = []

    with small_disk(tmp_path / "small-disk", 8 * MiB, monkeypatch) as disk:
        store = Store(disk)
        with PullThrough(store, up.server.url, None, log=lambda line: None) as pull:

            def caller() -> None:
                try:
                    pull.fetch(REPO, up.commit, up.file)
                except UserError as error:
                    outcome.append(error)

            fetching = threading.Thread(target=caller)
            fetching.start()
            record = store.progress_path(up.file.sha256)
            wait_for(lambda: progress_done(record) > 0, "the first checkpoint")
            filler = disk / "filler"
            assert fill(filler) > 0
            fetching.join(timeout=30)

            [error] = outcome
            assert str(error).startswith(
                f"no space for {LABEL}: {human_size(up.file.size)} needed in {disk / 'tmp'}"
            )
            assert not store.blob_path(up.file.sha256).exists()
            assert list((disk / "blobs" / "sha256").iterdir()) == []

            filler.unlink()
            up.server.faults.clear()
            path = pull.fetch(REPO, up.commit, up.file)
            assert sha_file(path) == up.file.sha256
