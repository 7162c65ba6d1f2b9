"""A CDN that lies, through ``api.sync`` end to end: each lie is a clear error with the right
exit code, and nothing reaches ``blobs/`` or the views."""

from __future__ import annotations

from pathlib import Path

import pytest
from faultkit import MB, Model, manifest, publish
from helpers import blob_files, home, progress_done, view_files

from alex_models import api
from alex_models._retry import RetryPolicy
from alex_models.download import DownloadOptions
from alex_models.errors import AlexModelsError, IntegrityError, RemoteError
from alex_models.mirror import MirrorRoot, MirrorServer


@pytest.fixture
def model(
    mirror_root: MirrorRoot,
    mirror: MirrorServer,
    project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Model:
    """One GGUF of about 3 MB, locked (every fault below touches the CDN only, or resolve)."""
    monkeypatch.setenv("HF_ENDPOINT", mirror.url)
    [published] = publish(mirror_root, tmp_path / "ggufs", [3 * MB])
    api.lock(manifest(project, [published]))
    return published


def sync_error(project: Path) -> AlexModelsError:
    with pytest.raises(AlexModelsError) as caught:
        api.sync(project / "models.yaml")
    return caught.value


def leave_partial(mirror: MirrorServer, project: Path, model: Model) -> int:
    """A first sync cut after 1 MB with no retries left: the next request for the file is ranged."""
    mirror.faults.add("drop-after=1MB,times=1,on=cdn")
    with pytest.raises(RemoteError):
        api.sync(
            project / "models.yaml", api.SyncOptions(download=DownloadOptions(retry=RetryPolicy(attempts=1)))
        )
    mirror.faults.clear()
    done = progress_done(home() / "tmp" / f"{model.sha256}.json")
    assert 0 < done < model.size
    return done


def assert_nothing_stored() -> None:
    assert blob_files() == []
    assert view_files() == []


@pytest.mark.slow
def test_wrong_bytes_are_an_integrity_error_exit_3_and_nothing_is_stored(
    mirror: MirrorServer, project: Path, model: Model
) -> None:
    mirror.faults.add("corrupt,on=cdn")

    error = sync_error(project)

    assert isinstance(error, IntegrityError)
    assert error.exit_code == 3
    assert model.sha256 in error.message
    assert_nothing_stored()
    assert list((home() / "tmp").glob("*.part")) == []  # wrong bytes are not kept to resume from


@pytest.mark.slow
def test_a_body_one_byte_short_with_status_200_is_an_integrity_error_exit_3_and_nothing_is_stored(
    mirror: MirrorServer, project: Path, model: Model
) -> None:
    # A whole file of another size than the lock pins is not the locked file: exit 3, as for a hash.
    mirror.faults.add("bad-length,on=cdn")

    error = sync_error(project)

    assert isinstance(error, IntegrityError)
    assert error.exit_code == 3
    assert f"the server offers {model.size - 1} bytes, the lock pins {model.size}" in error.message
    assert_nothing_stored()


@pytest.mark.slow
def test_a_content_length_disagreeing_with_content_range_is_a_remote_error_exit_4_and_nothing_is_stored(
    mirror: MirrorServer, project: Path, model: Model
) -> None:
    done = leave_partial(mirror, project, model)
    mirror.faults.add("bad-length,on=cdn")  # 206, Content-Range for the rest, one byte fewer sent

    error = sync_error(project)

    assert isinstance(error, RemoteError)
    assert error.exit_code == 4
    due = model.size - done
    assert f"announced {due - 1} bytes for a {due}-byte range" in error.message
    assert_nothing_stored()


@pytest.mark.slow
def test_a_content_range_for_the_wrong_range_is_a_remote_error_exit_4_and_nothing_is_stored(
    mirror: MirrorServer, project: Path, model: Model
) -> None:
    done = leave_partial(mirror, project, model)
    mirror.faults.add("wrong-range,on=cdn")

    error = sync_error(project)

    assert isinstance(error, RemoteError)
    assert error.exit_code == 4
    assert f"asked for bytes {done}-{model.size - 1}" in error.message
    assert f"'bytes {done + 1}-{model.size}/{model.size}'" in error.message
    assert_nothing_stored()


@pytest.mark.slow
def test_a_redirect_loop_is_a_remote_error_exit_4_and_nothing_is_stored(
    mirror: MirrorServer, project: Path, model: Model
) -> None:
    mirror.faults.add("redirect-loop")

    error = sync_error(project)

    assert isinstance(error, RemoteError)
    assert error.exit_code == 4
    assert model.file in error.message
    assert "redirect" in error.message.lower()
    assert_nothing_stored()
