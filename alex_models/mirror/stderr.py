"""Lines on the mirror's stderr, whole: many request threads write there at once."""

from __future__ import annotations

import sys
import threading

_LOCK = threading.Lock()


def write_stderr(text: str) -> None:
    """``text`` and its newline in one write, under one lock: ``print`` writes the two separately,
    so two threads' lines could merge ("GET a GET b\n\n")."""
    with _LOCK:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
