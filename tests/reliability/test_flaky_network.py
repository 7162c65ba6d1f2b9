"""A flaky link between ``api.sync`` and the CDN: cut connections, 5xx bursts, 429 with
``Retry-After``, a connection that stalls. Each time the sync completes within its retry budget
and the store holds exactly the locked bytes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from faultkit import MB, Model, delivered, manifest, publish, report
from helpers import blob, blob_files, cdn_gets, settled_log, sha_file

from alex_models import api
from alex_models._retry import RetryPolicy
from alex_models.download import DownloadOptions
from alex_models.mirror import MirrorRoot, MirrorServer


@pytest.fixture
def models(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[Model]:
    """Two GGUFs of about 5 and 6 MB, locked (the faults below only touch the CDN)."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    published = publish(mirror_root, tmp_path / "ggufs", [5 * MB, 6 * MB])
    api.lock(manifest(project, published))
    return published


def assert_stored_exactly(models: list[Model]) -> None:
    assert blob_files() == sorted(blob(m.sha256) for m in models)
    for m in models:
        assert sha_file(blob(m.sha256)) == m.sha256


@pytest.mark.slow
def test_connections_dropped_every_2_mb_resume_by_range_and_complete(
    mirror: MirrorServer, project: Path, models: list[Model]
) -> None:
    mirror.faults.add("drop-after=2MB,on=cdn")

    result = api.sync(project / "models.yaml")

    assert sorted(result.downloaded) == sorted(f"{m.repo}/{m.file}" for m in models)
    assert_stored_exactly(models)
    log = settled_log(mirror, lambda log: all(delivered(m)(log) for m in models), "every file delivered")
    for m in models:
        gets = cdn_gets(log, m.file)
        assert len(gets) == -(-m.size // (2 * MB))  # one request per 2 MB, each one resuming
        assert all(r.bytes_sent <= 2 * MB for r in gets)
        assert sum(r.bytes_sent for r in gets) == m.size  # nothing fetched twice
    report("drops", {"drop_every_bytes": 2 * MB, "connections_dropped": len(cdn_gets(log)) - len(models)})


@pytest.mark.slow
def test_a_burst_of_three_503s_is_retried_and_the_sync_completes(
    mirror: MirrorServer, project: Path, models: list[Model]
) -> None:
    mirror.faults.add("status=503,times=3,on=cdn")

    api.sync(project / "models.yaml")

    assert_stored_exactly(models)
    statuses = [
        r.status for r in cdn_gets(settled_log(mirror, lambda log: len(cdn_gets(log)) >= 5, "5 CDN GETs"))
    ]
    assert sorted(statuses) == [200, 200, 503, 503, 503]


@pytest.mark.slow
def test_429_with_retry_after_is_waited_out_and_the_sync_completes(
    mirror: MirrorServer, project: Path, models: list[Model]
) -> None:
    mirror.faults.add("rate-limit=1,times=2,on=cdn")
    waits: list[float] = []

    api.sync(
        project / "models.yaml",
        api.SyncOptions(download=DownloadOptions(retry=RetryPolicy(sleep=waits.append))),
    )

    assert_stored_exactly(models)
    log = settled_log(mirror, lambda log: len(cdn_gets(log)) >= 4, "4 CDN GETs")
    statuses = [r.status for r in cdn_gets(log)]
    assert sorted(statuses) == [200, 200, 429, 429]
    assert waits == [1.0, 1.0]  # Retry-After: 1 was honoured each time, not hammered through


@pytest.mark.slow
def test_a_stall_longer_than_the_read_timeout_is_retried_and_the_sync_completes(
    mirror: MirrorServer, project: Path, models: list[Model]
) -> None:
    stall = 20.0
    mirror.faults.add(f"stall={stall:g}s,times=1,on=cdn")
    began = time.monotonic()

    api.sync(project / "models.yaml", api.SyncOptions(download=DownloadOptions(read_timeout=1.0)))

    seconds = time.monotonic() - began
    assert_stored_exactly(models)
    assert seconds < stall  # the stalled connection was given up, not waited out
    # The stalled request is logged only when its stall ends; the two that delivered are there now.
    gets = cdn_gets(mirror.wait_log(lambda log: len(cdn_gets(log)) >= 2))
    resumed = [r for r in gets if r.range is not None]
    assert len(gets) == 2
    assert len(resumed) == 1  # the stalled file, fetched again from where the stall began
    assert resumed[0].range is not None  # for mypy: the list holds ranged GETs only
    start = int(resumed[0].range.removeprefix("bytes=").split("-")[0])
    stalled = next(m for m in models if resumed[0].path.endswith("/" + m.file))
    assert 0 < start < stalled.size
    assert resumed[0].bytes_sent == stalled.size - start
    report("stall", {"stall_seconds": stall, "read_timeout_seconds": 1.0, "sync_seconds": round(seconds, 1)})
