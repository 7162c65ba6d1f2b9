"""Ctrl-C (SIGINT) and SIGTERM to a real ``alex-models sync`` or ``pull`` while it downloads from a
slow CDN: it stops within moments, says in one line what it kept, keeps the partial file and its
progress record, and the next run fetches only the rest."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from faultkit import MB, delivered, locked_project, publish
from helpers import blob, cdn_gets, cli, home, progress_done, settled_log, start, wait_for

from alex_models._units import human_size
from alex_models.mirror import MirrorRoot, MirrorServer

STOPPED_WITHIN = 5.0
"""Seconds from the signal to the exit: generous, for a loaded machine; it takes well under one."""


def stop_with(process: subprocess.Popen[str], signum: signal.Signals) -> tuple[int, float]:
    """Send ``signum``; the exit code and the seconds it took to exit (killed after 30 s)."""
    sent = time.monotonic()
    process.send_signal(signum)
    try:
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, time.monotonic() - sent


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_sync_at_once_keeps_what_arrived_and_the_next_sync_resumes(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    signum: signal.Signals,
    code: int,
) -> None:
    [model] = locked_project(mirror_root, mirror, project, tmp_path / "ggufs", [20 * MB], monkeypatch)
    mirror.faults.add("bandwidth=2MB,on=cdn")  # 10 s for the whole file
    record = home() / "tmp" / f"{model.sha256}.json"
    process, stderr = start(project, "sync", "--frozen")
    wait_for(lambda: progress_done(record) > 0, "the sync to checkpoint part of the file")

    exit_code, seconds = stop_with(process, signum)

    kept = progress_done(record)
    assert exit_code == code, stderr.read_text(encoding="utf-8")
    assert seconds < STOPPED_WITHIN
    assert stderr.read_text(encoding="utf-8").splitlines()[-1] == (
        f"interrupted; {human_size(kept)} kept, run sync again to resume"
    )
    assert 0 < kept < model.size
    assert (home() / "tmp" / f"{model.sha256}.part").exists()
    assert not blob(model.sha256).exists()
    interrupted = len(settled_log(mirror, lambda log: bool(cdn_gets(log, model.file)), "the interrupted GET"))
    mirror.faults.clear()

    again = cli(project, "sync", "--frozen")

    assert again.returncode == 0, again.stderr
    assert blob(model.sha256).exists()
    resumed_log = settled_log(mirror, lambda log: delivered(model)(log[interrupted:]), "the resumed GET")
    resumed = cdn_gets(resumed_log[interrupted:], model.file)
    assert [(r.range, r.bytes_sent) for r in resumed] == [
        (f"bytes={kept}-{model.size - 1}", model.size - kept)
    ]


def test_ctrl_c_ends_a_retry_wait_at_once(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    locked_project(mirror_root, mirror, project, tmp_path / "ggufs", [1 * MB], monkeypatch)
    mirror.faults.add("rate-limit=30,on=cdn")  # every answer: 429, come back in 30 s
    process, stderr = start(project, "sync", "--frozen")
    mirror.wait_log(lambda log: any(r.status == 429 for r in log))

    exit_code, seconds = stop_with(process, signal.SIGINT)

    assert exit_code == 130, stderr.read_text(encoding="utf-8")
    assert seconds < STOPPED_WITHIN
    assert stderr.read_text(encoding="utf-8").splitlines()[-1] == (
        "interrupted; 0 B kept, run sync again to resume"
    )


def test_ctrl_c_stops_pull_at_once_and_keeps_what_arrived(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    [model] = publish(mirror_root, tmp_path / "ggufs", [20 * MB])
    mirror.faults.add("bandwidth=2MB,on=cdn")
    record = home() / "tmp" / f"{model.sha256}.json"
    process, stderr = start(project, "pull", model.repo, model.file)
    wait_for(lambda: progress_done(record) > 0, "the pull to checkpoint part of the file")

    exit_code, seconds = stop_with(process, signal.SIGINT)

    assert exit_code == 130, stderr.read_text(encoding="utf-8")
    assert seconds < STOPPED_WITHIN
    last = stderr.read_text(encoding="utf-8").splitlines()[-1]
    assert last == f"interrupted; {human_size(progress_done(record))} kept, run pull again to resume"
    assert (home() / "tmp" / f"{model.sha256}.part").exists()
    assert not blob(model.sha256).exists()
