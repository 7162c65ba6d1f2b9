"""The progress record of a partial download: when one is due, and what a resume trusts of it
after a killed process (what was written) and after a reboot (only what was flushed)."""

from __future__ import annotations

import itertools
import json

import pytest

from alex_models._units import MiB
from alex_models.checkpoints import Segment, record_due_in
from alex_models.download import DownloadOptions, FileJob
from alex_models.pieces import load_record, plan_pieces, save_record
from alex_models.store import Store

JOB = FileJob(sha256="ab" * 32, size=96 * MiB, sources=(), label="org/model/model.gguf")


def pieces() -> list[Segment]:
    """Three pieces: written 10, 20 and 0 MiB, of which 4, 20 and 0 flushed."""
    return [
        Segment(0, 32 * MiB, 10 * MiB, 4 * MiB),
        Segment(32 * MiB, 64 * MiB, 20 * MiB, 20 * MiB),
        Segment(64 * MiB, 96 * MiB, 0, 0),
    ]


def test_a_record_is_due_after_record_bytes_or_record_seconds_and_never_for_nothing() -> None:
    options = DownloadOptions(record_bytes=4 * MiB, record_seconds=0.1)

    assert record_due_in(4 * MiB, 0.03, options) == 0  # a fast link: by bytes
    assert record_due_in(64 * MiB, 0.01, options) == pytest.approx(0.015)  # but at most 40 a second
    assert record_due_in(1, 0.1, options) == 0  # a slow link: by time, however few
    assert record_due_in(1, 0.04, options) == pytest.approx(0.06)
    assert record_due_in(0, 60.0, options) is None  # nothing new: no record until bytes arrive


def test_after_a_killed_process_a_resume_starts_from_the_written_bytes(store: Store) -> None:
    save_record(store, JOB, pieces(), durably=False)

    loaded = load_record(store, JOB)

    assert loaded == pieces()  # the page cache outlives the process: what was written is there


def test_after_a_reboot_a_resume_trusts_only_the_flushed_bytes(store: Store) -> None:
    save_record(store, JOB, pieces(), durably=True)
    path = store.progress_path(JOB.sha256)
    record = json.loads(path.read_text(encoding="utf-8"))
    record["boot"] = "a boot before a power loss"
    path.write_text(json.dumps(record), encoding="utf-8")

    loaded = load_record(store, JOB)

    assert loaded is not None
    assert [(s.done, s.durable) for s in loaded] == [(4 * MiB, 4 * MiB), (20 * MiB, 20 * MiB), (0, 0)]


@pytest.mark.parametrize(
    ("change", "value"),
    [("durable", [11 * MiB, 20 * MiB, 0]), ("durable", [4 * MiB, 20 * MiB]), ("version", 3)],
    ids=["flushed-more-than-written", "durable-of-two-pieces", "unknown-version"],
)
def test_a_record_that_does_not_add_up_is_not_trusted(store: Store, change: str, value: object) -> None:
    save_record(store, JOB, pieces(), durably=False)
    path = store.progress_path(JOB.sha256)
    record = json.loads(path.read_text(encoding="utf-8"))
    record[change] = value
    path.write_text(json.dumps(record), encoding="utf-8")

    assert load_record(store, JOB) is None


@pytest.mark.parametrize("size", [1, 32 * MiB - 1, 32 * MiB, 33 * MiB, 100 * MiB, 256 * MiB + 3, 2048 * MiB])
def test_pieces_tile_the_file_and_the_last_round_is_cut_finer(size: int) -> None:
    """The last round of pieces (one per connection) ends together; the hasher then has only small
    pieces left to take, not seven large ones. A file of one piece stays one request."""
    pieces = plan_pieces(size, 8, 32 * MiB)

    assert pieces[0].start == 0
    assert pieces[-1].end == size
    assert all(a.end == b.start for a, b in itertools.pairwise(pieces))
    lengths = [p.end - p.start for p in pieces]
    if size <= 32 * MiB:
        assert lengths == [size]
        return
    assert max(lengths[-8:]) <= 8 * MiB  # the last round: quarters of a piece
    assert sum(length > 8 * MiB for length in lengths) <= max(0, size // (32 * MiB) - 8) + 1
