"""File answers: the whole file or one ``Range``, and the header lies the fault knobs tell."""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from alex_models.mirror.faults import FaultKind, RequestInfo
from alex_models.mirror.messages import HubError, HubRequest, Mirror, Response, http_number
from alex_models.mirror.repos import RepoFile

HEADER_LIES: tuple[FaultKind, ...] = ("ignore-range", "wrong-range", "bad-length")


def file_response(mirror: Mirror, request: HubRequest, item: RepoFile, headers: dict[str, str]) -> Response:
    """The answer for a file: whole, or the one ``Range`` asked, with the header lies the faults tell."""
    info = RequestInfo(request.scope, item.path)
    lies: set[FaultKind] = {kind for kind in HEADER_LIES if mirror.faults.take(kind, info)}
    request.applied.extend(sorted(lies))
    filename = item.path.rsplit("/", 1)[-1]
    headers = {
        **headers,
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename)}; filename=\"{_ascii(filename)}\"",
    }
    short = 1 if "bad-length" in lies else 0  # a consistent lie: one byte short, Content-Length agreeing
    byte_range = None if "ignore-range" in lies else parse_range(request.range_header, item.size)
    if "ignore-range" in lies:
        del headers["Accept-Ranges"]
    if byte_range is None:
        return Response(200, headers, file=item, start=0, length=max(0, item.size - short))
    if byte_range == "unsatisfiable":
        raise HubError(416, None, "Range Not Satisfiable", {"Content-Range": f"bytes */{item.size}"})
    start, end = byte_range
    shift = 1 if "wrong-range" in lies else 0
    headers["Content-Range"] = f"bytes {start + shift}-{end + shift}/{item.size}"
    return Response(206, headers, file=item, start=start, length=max(0, end - start + 1 - short))


def _ascii(name: str) -> str:
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)


def parse_range(header: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One ``bytes=`` range as (first, last) inclusive; None means serve the whole file.

    A malformed or multi-range header is ignored (RFC 9110 lets a server do so), which also
    exercises clients that must cope with a 200 to a Range request.
    """
    if header is None or not header.startswith("bytes=") or "," in header:
        return None
    first_text, sep, last_text = header[6:].strip().partition("-")
    first, last = http_number(first_text), http_number(last_text)
    if not sep or (first_text and first is None) or (last_text and last is None):
        return None
    if first is None:  # suffix range: the last N bytes
        if last is None:
            return None
        if last == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - last), size - 1
    if first >= size:
        return "unsatisfiable"
    if last is not None and last < first:
        return None
    return first, size - 1 if last is None else min(last, size - 1)
