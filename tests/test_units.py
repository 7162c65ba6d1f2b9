"""Sizes said to people."""

from __future__ import annotations

import pytest

from alex_models._units import human_size


@pytest.mark.parametrize(
    ("size", "said"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1 KB"),
        (1500, "1.5 KB"),
        (758_000, "758 KB"),
        (999_499, "999 KB"),
        (999_500, "1 MB"),
        (1_234_567, "1.23 MB"),
        (491_400_032, "491 MB"),
        (10**12, "1 TB"),
        (5 * 10**15, "5000 TB"),
    ],
)
def test_human_size(size: int, said: str) -> None:
    assert human_size(size) == said
