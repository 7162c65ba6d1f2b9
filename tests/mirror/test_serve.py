"""``alex-models mirror serve`` in the foreground: a real process, real signals, its stderr log."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest
from helpers import CLI, mirror_process, wait_for

from alex_models.mirror import MirrorRoot
from alex_models.mirror.stderr import write_stderr

_LOG_LINE = re.compile(r"(GET|HEAD|POST) (api|cdn) /\S* \d{3} \d+B( \[[a-z,-]+\])?")


@pytest.fixture
def serving(mirror_root: MirrorRoot) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``alex-models mirror serve`` on free ports, 5 MB of LFS bytes sent at 200 kB/s."""
    mirror_root.commit("org/big", {"big.gguf": bytes(5_000_000), "config.json": b"{}"})
    process, endpoint = mirror_process(
        [str(CLI), "mirror", "serve", "--root", str(mirror_root.root), "--port", "0", "--cdn-port", "0",
         "--fault", "bandwidth=200KB,file=big.gguf"]
    )  # fmt: skip
    try:
        yield process, endpoint
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


@pytest.mark.posix("SIGINT and SIGTERM delivered to a child")
@pytest.mark.parametrize(("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_serving_at_once_even_mid_download(
    serving: tuple[subprocess.Popen[str], str], sent: signal.Signals, code: int
) -> None:
    process, url = serving
    received = [0]

    def download() -> None:
        try:
            with (
                httpx2.Client(follow_redirects=True) as client,
                client.stream("GET", f"{url}/org/big/resolve/main/big.gguf") as response,
            ):
                for chunk in response.iter_bytes():
                    received[0] += len(chunk)
        except httpx2.HTTPError:
            pass  # the server went away mid-body: expected

    reader = threading.Thread(target=download, daemon=True)
    reader.start()
    wait_for(lambda: received[0] > 0, "the first bytes of a 25 s download")
    signalled = time.monotonic()
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=30)
    took = time.monotonic() - signalled
    reader.join(timeout=30)
    assert process.returncode == code
    assert took < 5, f"the mirror took {took:.1f} s to stop"
    assert received[0] < 5_000_000  # the download was cut, not finished first
    assert stderr.splitlines()[-1] == f"interrupted; stopped serving {url}"
    assert "Traceback" not in stderr


@pytest.mark.posix("SIGINT delivered to a child (to stop the mirror and read its whole log)")
def test_log_lines_from_concurrent_requests_never_merge(serving: tuple[subprocess.Popen[str], str]) -> None:
    process, url = serving
    rounds, clients = 10, 16

    def fetch() -> None:
        with httpx2.Client() as client:
            for _ in range(rounds):
                client.get(f"{url}/org/big/resolve/main/config.json")

    threads = [threading.Thread(target=fetch) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    lines = stderr.splitlines()[:-1]  # the last one says it was interrupted
    assert len(lines) == rounds * clients
    assert [line for line in lines if not _LOG_LINE.fullmatch(line)] == []


class _Writes:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def write(self, text: str) -> int:
        self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        """Nothing buffered."""


def test_a_log_line_is_one_write_with_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads can only merge lines written in pieces: each line goes out in one write."""
    writes = _Writes()
    monkeypatch.setattr(sys, "stderr", writes)
    write_stderr("GET api /x 200 2B")
    write_stderr("mirror: a broken repo.json")
    assert writes.calls == ["GET api /x 200 2B\n", "mirror: a broken repo.json\n"]
