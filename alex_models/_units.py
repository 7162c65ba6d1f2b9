"""Sizes for people: one way to say a byte count in messages and progress (``--json`` keeps raw bytes)."""

from __future__ import annotations

MiB = 1024 * 1024
"""For sizes in code: pieces, reads, buffers (people are told decimal units, below)."""
_UNITS = ("KB", "MB", "GB", "TB")


def human_size(size: int) -> str:
    """``size`` in decimal units, as file managers and ``hf`` show them: ``758 KB``, ``1.23 GB``.

    Three significant digits; plain bytes below 1 kB.
    """
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1000
        if value < 999.5:
            return f"{value:.3g} {unit}"
    return f"{value:.0f} TB"
