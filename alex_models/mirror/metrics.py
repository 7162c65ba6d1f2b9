"""The mirror's counters, and ``/metrics`` in Prometheus's text format (version 0.0.4).

Counted from each finished request's record, so they say what the request log says: requests by
origin and status, body bytes sent by origin, and file bodies served from the store (cache hits)
or missing from it (cache misses). With pull-through, its own counters too (``PullStats``): bytes
received from upstream, downloads run, requests that joined one, downloads failed. They name no
repo, file or client, so ``/metrics`` and ``/health`` answer without a token.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from alex_models.mirror.messages import RequestRecord

if TYPE_CHECKING:
    from alex_models.mirror.pullthrough import PullStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Counters since the server started; safe to update from every request thread."""

    def __init__(self, pull_stats: Callable[[], PullStats] | None = None) -> None:
        self._pull_stats = pull_stats
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._bytes: Counter[str] = Counter()
        self._cache: Counter[str] = Counter()
        self._in_flight = 0

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def finished(self, record: RequestRecord) -> None:
        with self._lock:
            self._in_flight -= 1
            self._requests[(record.origin, record.status)] += 1
            self._bytes[record.origin] += record.bytes_sent
            if record.cache is not None:
                self._cache[record.cache] += 1

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def render(self) -> str:
        with self._lock:
            requests = sorted(self._requests.items())
            sent = sorted(self._bytes.items())
            hits, misses, in_flight = self._cache["hit"], self._cache["miss"], self._in_flight
        lines = [
            "# HELP alex_models_mirror_requests_total Requests answered, by origin and status.",
            "# TYPE alex_models_mirror_requests_total counter",
            *(
                f'alex_models_mirror_requests_total{{origin="{origin}",status="{status}"}} {count}'
                for (origin, status), count in requests
            ),
            "# HELP alex_models_mirror_bytes_served_total Body bytes sent to clients, by origin.",
            "# TYPE alex_models_mirror_bytes_served_total counter",
            *(f'alex_models_mirror_bytes_served_total{{origin="{origin}"}} {n}' for origin, n in sent),
            "# HELP alex_models_mirror_cache_hits_total File bodies served from the store.",
            "# TYPE alex_models_mirror_cache_hits_total counter",
            f"alex_models_mirror_cache_hits_total {hits}",
            "# HELP alex_models_mirror_cache_misses_total File requests whose bytes were not in the store.",
            "# TYPE alex_models_mirror_cache_misses_total counter",
            f"alex_models_mirror_cache_misses_total {misses}",
            "# HELP alex_models_mirror_requests_in_flight Requests being answered now.",
            "# TYPE alex_models_mirror_requests_in_flight gauge",
            f"alex_models_mirror_requests_in_flight {in_flight}",
        ]
        if self._pull_stats is not None:
            lines += _pull_lines(self._pull_stats())
        return "\n".join(lines) + "\n"


def _pull_lines(stats: PullStats) -> list[str]:
    counters = (
        ("upstream_bytes", stats.upstream_bytes, "Bytes received from upstream by pull-through."),
        (
            "upstream_fetches",
            stats.fetches,
            "Downloads from upstream, finished or failed: one per cold file.",
        ),
        ("upstream_joined", stats.joined, "Requests that waited on a download already running."),
        ("upstream_failures", stats.failures, "Downloads from upstream that failed."),
    )
    lines: list[str] = []
    for name, value, text in counters:
        metric = f"alex_models_mirror_{name}_total"
        lines += [f"# HELP {metric} {text}", f"# TYPE {metric} counter", f"{metric} {value}"]
    return lines
