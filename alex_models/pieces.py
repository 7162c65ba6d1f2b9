"""A partial download in the store's ``tmp/``: the pieces it is cut into, the record a killed run
resumes from, and the space it takes up front.

``tmp/<sha256>.part`` holds the bytes, preallocated to the blob's size; ``tmp/<sha256>.json`` says
how much of each piece is there, two ways (``checkpoints`` writes it on two clocks):

* *written*: in the partial file, perhaps only in the page cache. Recorded every few MB or tenth
  of a second, the record replaced whole without an fsync: cheap. The page cache outlives a
  killed process (SIGKILL, the OOM killer, a crash of ours), so the next run on this machine
  resumes from here: a kill loses only what arrived since the last record.
* *durable*: flushed (``fdatasync``) before a record says so, at most every ``checkpoint_seconds``,
  and that record is fsynced. A power loss (any reboot) may drop what was not flushed and leave an
  older record, or none; every record only ever claimed as durable what was flushed before it was
  written. A run after a reboot (the record names the boot it was written in) resumes from
  *durable*, so it never builds on bytes that may not be there.

Whatever a crash still left wrong, the SHA256 of the whole file catches before it becomes a blob.
The downloader owns when these are read and written; ``transfer`` fills the pieces.
"""

from __future__ import annotations

import json
from pathlib import Path

from alex_models._fs import atomic_write
from alex_models._platform import boot_id, preallocate
from alex_models.checkpoints import Segment, no_space_named
from alex_models.sources import Blob
from alex_models.store import Store

_RECORD_VERSION = 2
"""Version 1 recorded only flushed bytes: read as durable ones."""
_PIECES_PER_CONNECTION = 8
"""More pieces keep the hasher closer behind the downloads; fewer cost fewer requests. A 2 GiB
file at 50 MB/s per connection: 6.4 s with 4 pieces per connection, 6.2 s with 8."""


_TAPER = 4
"""How much finer the last round of pieces is cut than the others."""


def plan_pieces(size: int, connections: int, min_segment: int) -> list[Segment]:
    """Pieces that ``connections`` workers take in file order, each a ranged request.

    Bytes then arrive roughly in order and the hasher keeps up. With one segment per connection
    it could only pass the first segment's end when that was done, and on a capped link hashed
    seven eighths of the file after the last byte arrived.

    The last round of pieces, one per connection, ends at about the same moment, and the hasher
    takes each piece only once those before it are in: so the file's last ``connections`` pieces'
    worth is cut ``_TAPER`` times finer, and what is left to hash after the last byte is a few
    small pieces instead of seven large ones (a 2 GiB file: 56 MiB instead of 224 MiB).
    """
    if size == 0:
        return [Segment(0, 0)]
    per_piece = -(-size // (connections * _PIECES_PER_CONNECTION))
    step = max(min_segment, per_piece)
    if size <= step:
        return [Segment(0, size)]  # one request
    fine = max(1, step // _TAPER)
    tail = max(0, (size - connections * step) // step * step)
    starts = [*range(0, tail, step), *range(tail, size, fine)]
    return [Segment(start, min(end, size)) for start, end in zip(starts, [*starts[1:], size], strict=True)]


def load_record(store: Store, blob: Blob) -> list[Segment] | None:
    """The pieces the last run recorded as on disk, or None when there is no record to trust:
    the written bytes if it ran since this machine booted, else only the durable ones."""
    try:
        record = json.loads(store.progress_path(blob.sha256).read_text(encoding="utf-8"))
        if record["version"] not in (1, _RECORD_VERSION) or record["size"] != blob.size:
            return None
        segments = [Segment(int(s), int(e), int(d)) for s, e, d in record["segments"]]
        if record["version"] == _RECORD_VERSION:
            durable = [int(d) for d in record["durable"]]
        else:
            durable = [s.done for s in segments]
        boot = record.get("boot")
        same_boot = boot is not None and boot == boot_id()
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if len(durable) != len(segments):
        return None
    # A record that does not tile the file exactly is not ours to trust: start over.
    expected_start = 0
    for segment, flushed in zip(segments, durable, strict=True):
        if segment.start != expected_start or not 0 <= flushed <= segment.done <= segment.end - segment.start:
            return None
        segment.durable = flushed
        if not same_boot:
            segment.done = flushed
        expected_start = segment.end
    return segments if expected_start == blob.size else None


def save_record(store: Store, blob: Blob, segments: list[Segment], *, durably: bool) -> None:
    """Record ``segments`` (their written and durable bytes), replacing the last record whole;
    ``durably`` fsyncs it, else a power loss may leave an older record (or none)."""
    record = {
        "version": _RECORD_VERSION,
        "sha256": blob.sha256,
        "size": blob.size,
        "boot": boot_id(),
        "segments": [[s.start, s.end, s.done] for s in segments],
        # Never more than written: a source that ignored Range restarted its piece from the start.
        "durable": [min(s.durable, s.done) for s in segments],
    }
    atomic_write(store.progress_path(blob.sha256), json.dumps(record).encode(), durable=durably)


def reserve(fd: int, blob: Blob, partial: Path) -> None:
    """Give the partial file its full size now, so a full disk fails here, not mid-download."""
    with no_space_named(blob, partial):
        preallocate(fd, blob.size)
