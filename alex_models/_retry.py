"""One retry policy for every network call: bounded attempts, exponential backoff with jitter,
and the server's ``Retry-After`` honoured when it sends one."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TypeVar

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; waits grow from ``base`` seconds, doubling, up to ``cap``."""

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    sleep: Callable[[float], object] | None = field(default=None, compare=False, repr=False)
    """Waits in place of the clock: a test passes one that records the waits instead of sleeping
    them. None: really wait."""

    def pause(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait ``seconds``, or less if ``stop`` is set meanwhile (Ctrl-C ends a download's wait)."""
        if self.sleep is not None:
            self.sleep(seconds)
        elif stop is not None:
            stop.wait(seconds)
        else:
            time.sleep(seconds)

    def delay(self, failures: int, retry_after: float | None) -> float:
        """Seconds to wait after the ``failures``-th failure (1-based)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.cap)
        ceiling: float = min(self.cap, self.base * 2.0 ** (failures - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security

    def call(self, action: Callable[[], T], retryable: Callable[[Exception], tuple[bool, float | None]]) -> T:
        """Run ``action``; on an exception ``retryable`` accepts, wait and run it again.

        ``retryable(exc)`` returns (retry?, seconds to wait, e.g. Retry-After, or None for the backoff).
        The last failure is raised.
        """
        failures = 0
        while True:
            try:
                return action()
            except Exception as exc:
                failures += 1
                again, retry_after = retryable(exc)
                if not again or failures >= self.attempts:
                    raise
                self.pause(self.delay(failures, retry_after))


def status_verdict(status: int, headers: Mapping[str, str]) -> tuple[bool, float | None]:
    """Whether an HTTP answer with ``status`` is worth another try, and the wait its server asked for."""
    return status in RETRYABLE_STATUS, parse_retry_after(headers.get("Retry-After"))


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """``Retry-After`` as seconds: integer seconds or an HTTP date (counted from ``now()``, the
    wall clock but in tests); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now())
