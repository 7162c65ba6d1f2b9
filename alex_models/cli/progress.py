"""Download progress for the terminal: rich bars on a TTY, plain lines otherwise, or nothing."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TYPE_CHECKING

from alex_models._units import human_size

if TYPE_CHECKING:  # rich and the downloader load when a file starts, so a sync with nothing to do skips both
    from rich.console import Console, RenderableType
    from rich.progress import Progress, TaskID

    from alex_models.download import FileJob


class BarProgress:
    """A bar per file, with bytes/s and ETA, and one for the total once a second file starts; a
    row fits the console's width (80 columns included): a long label keeps its tail, the file name.

    The bars (and rich) are made when the first file starts: a sync that finds everything in
    place draws nothing and never loads rich.
    """

    def __init__(self, console: Console | None = None) -> None:
        self._console = console
        self._shown: Progress | None = None
        self._entered = False
        self._label_width = 48
        self._tasks: dict[str, TaskID] = {}
        self._total: TaskID | None = None
        self._files = 0
        self._size = 0
        self._done = 0
        """Files this process fetches, their bytes, and how many are there: the total's figures."""
        self._lock = threading.Lock()

    def _bars(self) -> Progress:
        """The rich bars, made on first use (under ``_lock``), and started if the context is open."""
        if self._shown is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.table import Column

            console = self._console or Console(stderr=True)
            # The widest figures: "123.4/567.8 MB", "123.4 MB/s", "0:01:23", with a space between columns.
            figures = 14 + 1 + 10 + 1 + 7 + 1
            bar = 16 if console.width >= 80 else 10
            self._label_width = max(10, min(48, console.width - figures - bar - 1))
            self._shown = Progress(
                TextColumn("{task.description}", table_column=Column(width=self._label_width, no_wrap=True)),
                BarColumn(bar_width=bar),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            if self._entered:
                self._shown.start()
        return self._shown

    def __enter__(self) -> BarProgress:
        self._entered = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._entered = False
        if self._shown is not None:
            self._shown.stop()

    def __rich__(self) -> RenderableType:
        return self._bars().get_renderable()

    def started(self, job: FileJob, already: int) -> None:
        with self._lock:
            bars = self._bars()  # first: making them sets the label width
            self._show(job, _short(job.label, self._label_width), already)
            self._files += 1
            self._size += job.size
            self._done += already
            if self._total is not None:
                bars.update(self._total, total=self._size, completed=self._done)
            elif self._files == 2:  # one file needs no total: its own bar says it all
                self._total = bars.add_task("total", total=self._size, completed=self._done)

    def advanced(self, job: FileJob, received: int) -> None:
        with self._lock:
            self._done += received
            bars = self._bars()
            bars.update(self._tasks[job.sha256], advance=received)
            if self._total is not None:
                bars.update(self._total, completed=self._done)

    def finished(self, job: FileJob) -> None:
        with self._lock:
            self._bars().update(self._tasks[job.sha256], completed=job.size)

    def waiting(self, job: FileJob, done: int) -> None:
        """The other process's progress, from its checkpoints."""
        with self._lock:
            self._bars()  # first: making them sets the label width
            self._show(job, "waiting " + _short(job.label, self._label_width - 8), done)

    def _show(self, job: FileJob, description: str, completed: int) -> None:
        bars = self._bars()
        task = self._tasks.get(job.sha256)
        if task is None:
            self._tasks[job.sha256] = bars.add_task(description, total=job.size, completed=completed)
        else:
            bars.update(task, description=description, completed=completed)


class LineProgress:
    """One line when a file starts and one when it is stored (or sent): readable in CI logs."""

    _write_lock = threading.Lock()

    def __init__(self, verbs: tuple[str, str] = ("fetching", "stored")) -> None:
        self._waited: set[str] = set()
        self._starting, self._ending = verbs

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Nothing to tear down."""

    def started(self, job: FileJob, already: int) -> None:
        resumed = f", resuming at {human_size(already)}" if already else ""
        self._line(f"{self._starting} {job.label} ({human_size(job.size)}{resumed})")

    def advanced(self, job: FileJob, received: int) -> None:
        """Per-chunk lines would flood a log."""

    def finished(self, job: FileJob) -> None:
        self._line(f"{self._ending} {job.label}")

    def waiting(self, job: FileJob, done: int) -> None:
        """Said once per file: a log needs no ticker."""
        with self._write_lock:
            first = job.sha256 not in self._waited
            self._waited.add(job.sha256)
        if first:
            self._line(f"waiting for another alex-models process to finish {job.label}")

    def _line(self, text: str) -> None:
        # Called from download threads: print() writes the text and the newline separately, so two
        # threads would interleave them ("fetching a…fetching b…\n\n"). One write per line, locked.
        with self._write_lock:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


class QuietProgress(LineProgress):
    """Nothing but errors (``--quiet``, ``--json``)."""

    def started(self, job: FileJob, already: int) -> None:
        """Quiet."""

    def finished(self, job: FileJob) -> None:
        """Quiet."""

    def waiting(self, job: FileJob, done: int) -> None:
        """Quiet."""


def progress_for(quiet: bool, verbs: tuple[str, str] = ("fetching", "stored")) -> BarProgress | LineProgress:
    """Bars on a terminal, lines in a log (``verbs``: a file starts, a file is done), nothing when
    ``quiet``."""
    if quiet:
        return QuietProgress()
    return BarProgress() if sys.stderr.isatty() else LineProgress(verbs)


def _short(label: str, width: int = 48) -> str:
    return label if len(label) <= width else "…" + label[-(width - 1) :]
