"""The store on a real small filesystem (a tmpfs; needs root, or CAP_SYS_ADMIN, and fails loudly
without): too small from the start, and filled up by someone else mid-download."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import MB, locked_project
from helpers import blob, blob_files, cdn_gets, cli, fill, home, progress_done, sha_file, small_disk, start
from helpers import wait_for as wait_until

from alex_models._units import human_size
from alex_models.mirror import MirrorRoot, MirrorServer

MiB = 1024 * 1024


@pytest.mark.slow
@pytest.mark.linux("a tmpfs mount, for a small disk")
def test_a_disk_too_small_fails_early_naming_the_bytes_needed_and_fetches_nothing(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    models = locked_project(mirror_root, mirror, project, tmp_path / "ggufs", [3 * MB, 3 * MB], monkeypatch)

    with small_disk(tmp_path / "small-disk", 4 * MiB, monkeypatch) as store:
        result = cli(project, "sync")

        assert result.returncode == 1
        assert result.stderr.startswith(f"error: not enough disk space in {store}: ")
        assert f"{human_size(sum(m.size for m in models))} needed" in result.stderr
        assert blob_files() == []
        assert list((store / "tmp").iterdir()) == []
    assert cdn_gets(mirror.log) == []


@pytest.mark.slow
@pytest.mark.linux("a tmpfs mount, for a small disk")
def test_a_disk_filled_mid_download_is_a_clear_error_keeps_no_blob_and_the_next_run_resumes(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    [model] = locked_project(mirror_root, mirror, project, tmp_path / "ggufs", [8 * MB], monkeypatch)
    mirror.faults.add("bandwidth=2MB,on=cdn")

    with small_disk(tmp_path / "small-disk", 16 * MiB, monkeypatch) as store:
        record = home() / "tmp" / f"{model.sha256}.json"
        process, stderr = start(project, "sync")
        try:
            # The free-space check has passed and bytes are arriving: now someone fills the disk.
            wait_until(lambda: progress_done(record) > 0, "the first checkpoint")
            filler = store / "filler"
            assert fill(filler) > 0
        finally:
            code = process.wait(timeout=60)

        message = stderr.read_text(encoding="utf-8")
        assert code == 1, message
        [error] = [line for line in message.splitlines() if line.startswith("error: ")]
        assert error.startswith(
            f"error: no space for {model.repo}/{model.file}: {human_size(model.size)} needed in {store / 'tmp'}"
        )
        assert "Traceback" not in message
        assert blob_files() == []
        assert (store / "tmp" / f"{model.sha256}.part").exists()
        kept = progress_done(record)

        filler.unlink()
        mirror.faults.clear()
        again = cli(project, "sync")

        assert again.returncode == 0, again.stderr
        assert f"resuming at {human_size(kept)})" in again.stderr
        assert kept > 0
        assert sha_file(blob(model.sha256)) == model.sha256
        assert cli(project, "verify").returncode == 0
