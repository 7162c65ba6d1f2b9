"""A partial download in the store's ``tmp/``: the pieces it is cut into, the record a killed run
resumes from, and the space it takes up front.

``tmp/<sha256>.part`` holds the bytes, preallocated to the blob's size; ``tmp/<sha256>.json`` says
how much of each piece is on disk, two ways (``transfer`` writes it on two clocks):

* *written*: in the partial file, perhaps only in the page cache. Recorded every few MB (or a
  fraction of a second), replaced whole without an fsync: cheap. A killed process leaves the page
  cache as it was, so after a kill (SIGKILL, OOM, a crash of ours) the next run on this machine
  resumes from here, and a kill loses only what arrived since the last record.
* *durable*: flushed (``fdatasync``) before the record claiming it was written, every
  ``checkpoint_seconds``, that record fsynced. A power loss (or any reboot) may drop unflushed
  bytes and leave the record at any earlier version (or none): each version only ever claimed
  bytes that were flushed before it was written, so a run after a reboot, recognised by the boot
  named in the record, resumes from *durable* and never builds on bytes that may not be there.

Whatever a crash still got wrong, the SHA256 of the whole file catches before it becomes a blob.
The downloader owns when these are read and written; ``transfer`` fills the pieces.
"""

from __future__ import annotations

import json
from pathlib import Path

from alex_models._fs import atomic_write
from alex_models._platform import boot_id, preallocate
from alex_models.sources import Blob
from alex_models.store import Store
from alex_models.transfer import Segment, raise_if_no_space

_RECORD_VERSION = 2
"""Version 1 recorded only flushed bytes: read as durable ones."""
_PIECES_PER_CONNECTION = 8
"""More pieces keep the hasher closer behind the downloads; fewer cost fewer requests. A 2 GiB
file at 50 MB/s per connection: 6.4 s with 4 pieces per connection, 6.2 s with 8."""


def plan_pieces(size: int, connections: int, min_segment: int) -> list[Segment]:
    """Pieces that ``connections`` workers take in file order, each a ranged request.

    Bytes then arrive roughly in order and the hasher keeps up. With one segment per connection
    it could only pass the first segment's end when that was done, and on a capped link hashed
    seven eighths of the file after the last byte arrived.
    """
    if size == 0:
        return [Segment(0, 0)]
    per_piece = -(-size // (connections * _PIECES_PER_CONNECTION))
    step = max(min_segment, per_piece)
    return [Segment(start, min(start + step, size)) for start in range(0, size, step)]


def load_record(store: Store, blob: Blob) -> list[Segment] | None:
    """The pieces the last run recorded as on disk, or None when there is no record to trust:
    the written bytes if it ran since this machine booted, else only the durable ones."""
    try:
        record = json.loads(store.progress_path(blob.sha256).read_text(encoding="utf-8"))
        if record["version"] not in (1, _RECORD_VERSION) or record["size"] != blob.size:
            return None
        segments = [Segment(int(s), int(e), int(d)) for s, e, d in record["segments"]]
        durable = [int(d) for d in record["durable"]] if record["version"] == _RECORD_VERSION else None
        same_boot = record.get("boot") is not None and record.get("boot") == boot_id()
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if durable is None:
        durable = [s.done for s in segments]
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
        "durable": [min(s.durable, s.done) for s in segments],
    }
    atomic_write(store.progress_path(blob.sha256), json.dumps(record).encode(), durable=durably)


def reserve(fd: int, blob: Blob, partial: Path) -> None:
    """Give the partial file its full size now, so a full disk fails here, not mid-download."""
    try:
        preallocate(fd, blob.size)
    except OSError as exc:
        raise_if_no_space(exc, blob, partial)
        raise
