"""What ``sync`` and ``pull`` show while they download: rich bars on a terminal (rendered here into a
real rich Console of 80 columns), plain lines in a log."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from alex_models.cli.progress import BarProgress, LineProgress
from alex_models.download import FileJob

LONG = FileJob("a" * 64, 491_400_032, (), "Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf")
SECOND = FileJob("b" * 64, 12_345_678_901, (), "org/big/big-Q4_K_M-00001-of-00002.gguf")
OTHER = FileJob("c" * 64, 5_000_000, (), "org/small/small-Q4_K_M.gguf")


def rendered(bars: BarProgress, width: int = 80) -> list[str]:
    output = io.StringIO()
    Console(file=output, width=width, force_terminal=True, color_system=None).print(bars)
    return output.getvalue().splitlines()


def test_one_file_is_one_row_with_its_bar_and_figures_within_80_columns_and_no_total() -> None:
    bars = BarProgress(Console(width=80))

    bars.started(LONG, 12_300_000)
    bars.advanced(LONG, 100_000_000)

    [row] = rendered(bars)
    assert len(row) <= 80
    assert row.startswith("…")
    assert "instruct-q4_k_m.gguf" in row  # a long label keeps its tail: the file name
    assert "━" in row  # the bar is drawn, not squeezed out
    assert "112.3/491.4 MB" in row


def test_a_second_file_adds_a_total_and_every_row_stays_within_80_columns() -> None:
    bars = BarProgress(Console(width=80))

    bars.started(LONG, 12_300_000)
    bars.started(SECOND, 0)
    bars.advanced(LONG, 100_000_000)
    bars.advanced(SECOND, 1_000_000_000)

    rows = rendered(bars)
    labels = [row.split()[0] for row in rows]
    assert labels[0].endswith("instruct-q4_k_m.gguf")
    assert labels[1].endswith("-00001-of-00002.gguf")
    assert labels[2] == "total"
    assert all(len(row) <= 80 and "━" in row for row in rows), rows
    assert "1.1/12.8 GB" in rows[-1]  # both files' sizes and bytes


def test_waiting_for_another_process_shows_its_progress_as_a_bar() -> None:
    bars = BarProgress(Console(width=80))

    bars.waiting(OTHER, 1_000_000)
    bars.waiting(OTHER, 2_500_000)

    [row] = rendered(bars)
    assert row.startswith("waiting …")
    assert "l-Q4_K_M.gguf" in row
    assert "2.5/5.0 MB" in row
    assert len(row) <= 80


def test_lines_say_sizes_in_human_units_and_waiting_once(capsys: pytest.CaptureFixture[str]) -> None:
    lines = LineProgress()

    lines.started(LONG, 12_300_000)
    lines.waiting(OTHER, 0)
    lines.waiting(OTHER, 1_000_000)
    lines.finished(LONG)

    assert capsys.readouterr().err.splitlines() == [
        f"fetching {LONG.label} (491 MB, resuming at 12.3 MB)",
        f"waiting for another alex-models process to finish {OTHER.label}",
        f"stored {LONG.label}",
    ]
