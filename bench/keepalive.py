"""Keep-alive across pieces (issue 18): an origin to time ``sync`` against, before and after.

One GGUF on nginx (``bench/nginx.py``) behind the mirror's Hub API, as the ``nginx`` scenario of
``bench/suite.py``; with ``--delay-ms``, a TCP relay in front of nginx holds each new connection
that long before its first byte is forwarded: what setting a connection up costs on a real network
(the TCP and TLS handshakes' round trips; there is no netem on this kernel). The relay moves bytes
with ``splice``, no copy through Python. Serves until interrupted (Ctrl-C, SIGTERM), having written
``DIR/env`` (the variables ``sync`` needs, one a line), ``DIR/project`` and ``DIR/cdn-url``;
``--connections DIR`` says how many TCP connections nginx was asked on so far (its access log's
``$connection``: the difference before and after a sync is that sync's count); ``--cpu URL``
reads a file on nginx in 32 MiB pieces, one at a time, through each way of receiving a body, and
prints each one's CPU seconds (user + system) per GiB, measured in this process, nginx apart.

    .venv/bin/python bench/keepalive.py DIR --size-gib 2 --delay-ms 30 &
    env $(cat DIR/env) sh -c 'rm -rf "$ALEX_MODELS_HOME"; cd DIR/project; exec alex-models sync --frozen -q'
    .venv/bin/python bench/keepalive.py --connections DIR
    .venv/bin/python bench/keepalive.py --cpu "$(cat DIR/cdn-url)" --gib 4
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
from nginx import connections, hub_in_front, nginx
from suite import GiB, alex, env_for, project_for, publish, run

from alex_models.sources.http import _read
from alex_models.sources.keepalive import KeptConnections

_PIPE_SIZE = 1024 * 1024
_F_SETPIPE_SZ = 1031  # Linux's fcntl to grow a pipe


@contextlib.contextmanager
def delayed(upstream: str, delay: float) -> Iterator[str]:
    """A relay to ``upstream`` (``http://127.0.0.1:PORT``) on a port of its own, each new
    connection held ``delay`` seconds first; yields its URL."""
    port = int(upstream.rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))

    def pump(source: socket.socket, sink: socket.socket) -> None:
        read, write = os.pipe()
        fcntl.fcntl(read, _F_SETPIPE_SZ, _PIPE_SIZE)
        try:
            while moved := os.splice(source.fileno(), write, _PIPE_SIZE):
                while moved:
                    moved -= os.splice(read, sink.fileno(), moved)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            os.close(read)
            os.close(write)

    def relay(client: socket.socket) -> None:
        time.sleep(delay)
        server = socket.create_connection(("127.0.0.1", port))
        back = threading.Thread(target=pump, args=(server, client), daemon=True)
        back.start()
        pump(client, server)
        back.join()
        client.close()
        server.close()

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                threading.Thread(target=relay, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def serve(folder: Path, size: int, delay: float) -> None:
    repo = "bench/keepalive-GGUF"
    commit, names = publish(folder / "root", repo, [size], folder / "work")
    project = project_for(folder / "project", repo, names)
    with contextlib.ExitStack() as stack:
        cdn = stack.enter_context(nginx(folder / "root", folder / "nginx"))
        if delay:
            cdn = stack.enter_context(delayed(cdn, delay))
        hub = stack.enter_context(hub_in_front(folder / "root", cdn))
        env = env_for(hub, folder)
        run(alex("lock"), env, project)
        (folder / "cdn-url").write_text(f"{cdn}/{repo}/{commit}/{names[0]}\n")
        keys = ("HF_ENDPOINT", "HF_HUB_DISABLE_TELEMETRY", "HF_HOME", "ALEX_MODELS_HOME")
        (folder / "env").write_text("".join(f"{key}={env[key]}\n" for key in keys))
        print(f"serving {names[0]} of {repo}@{commit[:8]} at {hub}, CDN {cdn}", flush=True)
        # SIGTERM (or Ctrl-C) leaves through the context managers, which stop nginx and the mirror.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


PIECE = 32 * 1024 * 1024


def cpu_per_gib(url: str, gib: float) -> None:
    """CPU seconds per GiB of each way to receive a body: httpx2 (h11, its 64 KiB reads), httpx2's
    connection read past h11 (the fast path before keep-alive), and a kept connection."""
    client = httpx2.Client()
    size = int(client.head(url).headers["Content-Length"])
    kept = KeptConnections()

    def body(how: str, start: int) -> Iterator[bytes | memoryview]:
        request = client.build_request("GET", url, headers={"Range": f"bytes={start}-{start + PIECE - 1}"})
        response = kept.send(request, 60.0) if how == "kept" else client.send(request, stream=True)
        if response is None or response.status_code != 206:
            raise SystemExit(f"{url}: no 206 answer ({how})")
        try:
            yield from _read(response, PIECE, 60.0) if how != "h11" else response.iter_raw()
        finally:
            response.close()

    for how in ("h11", "past h11", "kept"):
        total, began = 0, time.process_time()
        for n in range(int(gib * 1024**3) // PIECE):
            total += sum(len(piece) for piece in body(how, n * PIECE % (size - PIECE)))
        print(f"{how:10} {(time.process_time() - began) / (total / 1024**3):.2f} CPU s per GiB")
    print(f"kept connections opened: {kept.opened}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("dir", type=Path, nargs="?", default=Path("keepalive-bench"))
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="held before each new connection")
    parser.add_argument("--connections", action="store_true", help="count nginx's connections, then exit")
    parser.add_argument("--cpu", metavar="URL", help="CPU per GiB of each way to receive URL's body")
    parser.add_argument("--gib", type=float, default=4.0, help="read this much each way (--cpu)")
    args = parser.parse_args()
    if args.cpu:
        cpu_per_gib(args.cpu, args.gib)
        return
    if args.connections:
        print(connections(args.dir / "nginx"))
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    serve(args.dir.absolute(), int(args.size_gib * GiB), args.delay_ms / 1000)


if __name__ == "__main__":
    main()
