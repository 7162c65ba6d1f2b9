"""Download progress for the terminal: rich bars on a TTY, plain lines otherwise, or nothing."""

from __future__ import annotations

import sys
import threading
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from alex_models.download import FileJob


class BarProgress:
    """A bar per file and one for the total, with bytes/s and ETA."""

    def __init__(self) -> None:
        self._bars = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._tasks: dict[str, TaskID] = {}
        self._total: TaskID | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> BarProgress:
        self._bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bars.stop()

    def started(self, job: FileJob, already: int) -> None:
        with self._lock:
            if self._total is None:
                self._total = self._bars.add_task("total", total=0)
            self._bars.update(
                self._total, total=(self._bars.tasks[self._total].total or 0) + job.size, advance=already
            )
            self._tasks[job.sha256] = self._bars.add_task(
                _short(job.label), total=job.size, completed=already
            )

    def advanced(self, job: FileJob, received: int) -> None:
        self._bars.update(self._tasks[job.sha256], advance=received)
        if self._total is not None:
            self._bars.update(self._total, advance=received)

    def finished(self, job: FileJob) -> None:
        self._bars.update(self._tasks[job.sha256], completed=job.size)


class LineProgress:
    """One line when a file starts and one when it is stored: readable in CI logs."""

    _write_lock = threading.Lock()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Nothing to tear down."""

    def started(self, job: FileJob, already: int) -> None:
        resumed = f", resuming at {already} bytes" if already else ""
        self._line(f"fetching {job.label} ({job.size} bytes{resumed})")

    def advanced(self, job: FileJob, received: int) -> None:
        """Per-chunk lines would flood a log."""

    def finished(self, job: FileJob) -> None:
        self._line(f"stored {job.label}")

    def _line(self, text: str) -> None:
        # Called from download threads: print() writes the text and the newline separately, so two
        # threads would interleave them ("fetching a…fetching b…\n\n"). One write per line, locked.
        with self._write_lock:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


class QuietProgress(LineProgress):
    def started(self, job: FileJob, already: int) -> None:
        """Quiet."""

    def finished(self, job: FileJob) -> None:
        """Quiet."""


def progress_for(quiet: bool) -> BarProgress | LineProgress:
    if quiet:
        return QuietProgress()
    return BarProgress() if sys.stderr.isatty() else LineProgress()


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1) :]
