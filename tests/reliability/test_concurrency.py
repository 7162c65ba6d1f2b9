"""Several ``alex-models`` processes on one store at once: four syncs, and a gc during a sync."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from faultkit import MB, delivered, locked_project, report
from helpers import (
    blob,
    blob_files,
    cdn_gets,
    cli,
    home,
    progress_done,
    settled_log,
    sha_file,
    start,
    wait_for,
)

from alex_models.mirror import MirrorRoot, MirrorServer


@pytest.mark.slow
def test_four_syncs_at_once_on_one_store_all_succeed_and_each_blob_is_downloaded_once(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = locked_project(
        mirror_root, mirror, project, tmp_path / "ggufs", [3 * MB, 4 * MB, 5 * MB], monkeypatch
    )
    mirror.faults.add("bandwidth=4MB,on=cdn")  # each file takes a second or so: the runs overlap

    runs = [start(project, "sync", "--json") for _ in range(4)]
    codes = [process.wait(timeout=120) for process, _ in runs]

    assert codes == [0, 0, 0, 0], [err.read_text(encoding="utf-8") for _, err in runs]
    log = settled_log(mirror, lambda log: all(delivered(m)(log) for m in models), "every file delivered")
    for m in models:
        # One complete GET per file: the other processes waited on its lock and reused the blob.
        assert [(r.status, r.range, r.bytes_sent) for r in cdn_gets(log, m.file)] == [(200, None, m.size)]
    summaries = [json.loads(err.with_suffix(".o").read_text(encoding="utf-8")) for _, err in runs]
    assert sorted(label for s in summaries for label in s["downloaded"]) == sorted(
        f"{m.repo}/{m.file}" for m in models
    )
    assert sum(s["bytes"] for s in summaries) == sum(m.size for m in models)
    assert blob_files() == sorted(blob(m.sha256) for m in models)
    assert all(sha_file(blob(m.sha256)) == m.sha256 for m in models)
    assert cli(project, "verify").returncode == 0
    report("concurrency", {"processes": 4, "files": len(models), "cdn_gets": len(cdn_gets(log))})


@pytest.mark.slow
def test_gc_during_a_sync_removes_nothing_the_lock_needs_and_the_sync_completes(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    present, pending = locked_project(
        mirror_root, mirror, project, tmp_path / "ggufs", [2 * MB, 8 * MB], monkeypatch
    )
    assert cli(project, "sync", "--only", present.key).returncode == 0
    mirror.faults.add("bandwidth=2MB,on=cdn")
    record = home() / "tmp" / f"{pending.sha256}.json"

    process, stderr = start(project, "sync")
    try:
        wait_for(lambda: progress_done(record) > 0, "the sync to checkpoint part of the file")
        collected = cli(project, "gc", "--json")
        during = progress_done(record)
    finally:
        code = process.wait(timeout=60)

    assert collected.returncode == 0, collected.stderr
    freed = json.loads(collected.stdout)
    assert (freed["blobs"], freed["partials"], freed["views"], freed["bytes_freed"]) == (0, 0, 0, 0)
    assert 0 < during < pending.size  # gc ran while the file was still arriving
    assert code == 0, stderr.read_text(encoding="utf-8")
    assert blob_files() == sorted(blob(m.sha256) for m in (present, pending))
    assert cli(project, "verify").returncode == 0
    gets = cdn_gets(settled_log(mirror, delivered(pending), "the pending file delivered"), pending.file)
    assert [(r.range, r.bytes_sent) for r in gets] == [(None, pending.size)]  # never restarted


@pytest.mark.slow
def test_a_second_sync_says_once_that_it_waits_for_the_first_and_stops_at_once_on_ctrl_c(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [model] = locked_project(mirror_root, mirror, project, tmp_path / "ggufs", [6 * MB], monkeypatch)
    mirror.faults.add("bandwidth=2MB,on=cdn")  # the first sync holds the file for about 3 s
    record = home() / "tmp" / f"{model.sha256}.json"
    first, first_stderr = start(project, "sync", "--frozen")
    wait_for(lambda: progress_done(record) > 0, "the first sync to checkpoint part of the file")
    waits = f"waiting for another alex-models process to finish {model.repo}/{model.file}"

    second, second_stderr = start(project, "sync", "--frozen")
    wait_for(lambda: waits in second_stderr.read_text(encoding="utf-8"), "the second sync to say it waits")
    sent = time.monotonic()
    second.send_signal(signal.SIGINT)
    code = second.wait(timeout=30)
    seconds = time.monotonic() - sent

    assert code == 130
    assert seconds < 5.0  # the wait polls its lock: it ends within moments, not with the first sync
    assert second_stderr.read_text(encoding="utf-8").splitlines() == [
        waits,
        "interrupted; 0 B kept, run sync again to resume",
    ]
    assert first.wait(timeout=60) == 0, first_stderr.read_text(encoding="utf-8")
    assert sha_file(blob(model.sha256)) == model.sha256
    gets = cdn_gets(settled_log(mirror, delivered(model), "the file delivered"), model.file)
    assert [(r.range, r.bytes_sent) for r in gets] == [(None, model.size)]  # only the first downloaded
