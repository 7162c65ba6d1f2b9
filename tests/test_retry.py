"""The one retry policy: how long it waits, told by a recording ``sleep`` instead of slept."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from alex_models._retry import RetryPolicy, parse_retry_after

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


class Flaky:
    """Fails ``times`` times with ``OSError``, then answers."""

    def __init__(self, times: int) -> None:
        self.left = times

    def __call__(self) -> str:
        if self.left:
            self.left -= 1
            raise OSError("reset")
        return "answer"


def test_the_server_s_retry_after_is_waited_instead_of_the_backoff() -> None:
    waits: list[float] = []
    policy = RetryPolicy(attempts=3, sleep=waits.append)

    assert policy.call(Flaky(2), lambda exc: (True, 12.0)) == "answer"

    assert waits == [12.0, 12.0]


def test_the_backoff_doubles_with_jitter_and_the_last_failure_is_raised() -> None:
    waits: list[float] = []
    policy = RetryPolicy(attempts=4, base=1.0, sleep=waits.append)

    with pytest.raises(OSError, match="reset"):
        policy.call(Flaky(4), lambda exc: (True, None))

    assert len(waits) == 3  # between the four attempts, none after the last
    for n, wait in enumerate(waits):
        assert 2.0**n / 2 <= wait <= 2.0**n


def test_retry_after_as_an_http_date_counts_from_the_clock() -> None:
    in_90_s = format_datetime(datetime.fromtimestamp(NOW + 90, tz=UTC), usegmt=True)

    assert parse_retry_after(in_90_s, now=lambda: NOW) == 90.0
    assert parse_retry_after(in_90_s, now=lambda: NOW + 120) == 0.0  # a date already past: go now
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("soon") is None
