"""Pull-through for a mirror that serves the store: a locked file the store lacks is fetched once
from upstream, verified against the lock, promoted, and only then served.

``PullThrough.fetch`` is the whole engine. It runs the downloader ``sync`` runs (ranged,
resumable, SHA256 and size checked against the lock, the GGUF header checked, promoted by
``Store.promote``), with the upstream Hub as the job's only source; the token goes there only.

Single flight: the first caller of a blob in this process downloads it; every other caller of
that blob meanwhile waits on that download and gets its outcome, the path or the same error. A
second process on the same store (another mirror, a ``sync``) is kept out by the store's file lock
per blob, which the downloader holds while it works: whichever comes second waits and reuses the
blob. Either way upstream sends the file once.

Bytes are served only after verification, never while they stream. A file's SHA256 is known only
after its last byte, so a client served the prefix of a download that then fails could learn it
only from a connection cut before ``Content-Length`` (HTTP/1.1 has no later status). Hub clients
take a cut as a reason to resume, not to distrust: ``huggingface_hub`` (``http_get``) keeps what
it read, asks for the rest with ``Range`` and checks the size, never the SHA256. The wrong prefix
would be kept, the rest appended from the retried (good) download, and a right-sized wrong file
loaded with nobody the wiser. Holding back the last bytes until the verdict does not help against that.
The price of waiting: the first client's first byte comes when the download is verified (the
hasher follows the written prefix, so that is moments after the last byte), and its last byte one
transfer of the file over the mirror's own link later.

Failures, each for the next ``fetch`` of the blob to retry: upstream gone mid-file is a
``RemoteError`` (exit 4) and leaves the partial file and its record in ``tmp/``, so the retry
resumes; wrong bytes from upstream are an ``IntegrityError`` (exit 3), discarded, never stored; a
full disk is one ``UserError`` naming the bytes and the folder. Nothing ever has a blob's name
before it is verified. Each failure is also said in one log line (``log``), which never holds the
token.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType

import httpx2

from alex_models._units import human_size
from alex_models.download import Cancelled, Downloader, DownloadOptions, FileJob, NoProgress
from alex_models.errors import AlexModelsError, RemoteError, UserError
from alex_models.fetch import new_client
from alex_models.ggufinfo import check_gguf
from alex_models.lock import LockedFile
from alex_models.mirror.stderr import write_stderr
from alex_models.sources import HubSource
from alex_models.store import Store

_STOP_WAIT = 5.0
"""Seconds ``close`` gives downloads to checkpoint and stop (they take a fraction of one)."""


@dataclass(frozen=True)
class PullStats:
    """What pull-through has done since it started, for ``/metrics``: counters that only grow."""

    fetches: int = 0
    """Downloads this process ran from upstream, finished or failed: one per cold blob."""
    upstream_bytes: int = 0
    """Bytes received from upstream and written to the store's partial files."""
    joined: int = 0
    """Calls that waited on a download already running, in this process or another on the store."""
    hits: int = 0
    """Calls the store answered at once: the blob was there."""
    failures: int = 0
    """Downloads that ended in an error (each ``fetch`` waiting on one got that error too)."""


@dataclass
class _Flight:
    """One download in this process, and everyone waiting on it."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class PullThrough:
    """Fetches locked files the store lacks from ``upstream_endpoint`` (a Hub, or another mirror).

    ``token`` is sent to that endpoint's origin only (the mirror's own ``HF_TOKEN``, which the
    caller looks up: ``fetch.hub_token()``; None sends none; clients of the mirror need none), and is
    never in a message or a log line. ``log`` receives one line per download stored or failed
    (default: the mirror's stderr). Safe to call from many threads; ``close`` (or leaving the
    ``with`` block) stops downloads in flight, keeping their partial files for the next start.
    """

    def __init__(
        self,
        store: Store,
        upstream_endpoint: str,
        token: str | None,
        *,
        client: httpx2.Client | None = None,
        options: DownloadOptions | None = None,
        log: Callable[[str], None] = write_stderr,
    ) -> None:
        if httpx2.URL(upstream_endpoint).userinfo:
            raise UserError(
                "the upstream URL holds credentials, which would show in messages and logs",
                hint="give the URL without them and the token in HF_TOKEN",
            )
        self.store = store.init()
        self.upstream = upstream_endpoint.rstrip("/")
        self._token = token
        self._log = log
        self._own_client = client is None
        self._http = client or new_client()
        self._counted = _Counted()
        self._downloader = Downloader(
            self.store,
            self._http,
            options=options,
            progress=self._counted,
            check=_check_header,
            keep_alive=self._own_client,  # a caller's client keeps its settings for every byte
        )
        self._guard = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def __repr__(self) -> str:
        return f"PullThrough({self.store.home}, {self.upstream!r})"  # no token

    def fetch(self, repo: str, commit: str, file: LockedFile) -> Path:
        """The path of ``file``'s blob in the store, fetched from upstream (``repo`` at ``commit``)
        and verified first if it is not there yet; blocks until then.

        Raises ``RemoteError`` (upstream failed; the partial is kept and the next call resumes),
        ``IntegrityError`` (upstream sent other bytes than the lock pins; nothing kept) or
        ``UserError`` (the store is read-only or its disk is full, or upstream denies access).
        """
        if self.store.has_blob(file.sha256, file.size):
            self._counted.add(hits=1)
            return self.store.blob_path(file.sha256)
        with self._guard:
            flight = self._flights.get(file.sha256)
            leader = flight is None
            if flight is None:
                flight = self._flights[file.sha256] = _Flight()
        if not leader:
            self._counted.add(joined=1)
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return self.store.blob_path(file.sha256)
        try:
            self._download(repo, commit, file)
        except BaseException as error:
            flight.error = error
            raise
        finally:
            # Gone from the table as it is settled: a later call finds the blob, or starts anew.
            with self._guard:
                del self._flights[file.sha256]
                flight.done.set()
        return self.store.blob_path(file.sha256)

    def stats(self) -> PullStats:
        """The counters now."""
        return self._counted.snapshot()

    def close(self) -> None:
        """Stop every download in flight at its next chunk, and return once they have stopped
        (each keeps what arrived, for the next start to resume; its callers get a ``RemoteError``);
        then release the connections."""
        self._downloader.cancel()
        with self._guard:
            flights = list(self._flights.values())
        for flight in flights:
            flight.done.wait(_STOP_WAIT)
        if self._own_client:
            self._http.close()

    def __enter__(self) -> PullThrough:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _download(self, repo: str, commit: str, file: LockedFile) -> None:
        label = f"{repo}/{file.path}"
        self.store.require_writable(f"{label} is not in it yet")
        source = HubSource(self.upstream, repo, commit, file.path, self._token)
        job = FileJob(file.sha256, file.size, (source,), label)
        try:
            downloaded = self._downloader.fetch(job)
        except Cancelled:
            self._counted.add(fetches=1, failures=1)
            raise RemoteError(
                f"{label}: the mirror stopped while fetching it from {source.name}",
                hint="what arrived is kept; the next request resumes it",
            ) from None
        except AlexModelsError as error:
            self._counted.add(fetches=1, failures=1)
            self._log(f"pull-through: {label} from {source.name} failed (exit {error.exit_code}): {error}")
            raise
        if downloaded:
            self._counted.add(fetches=1)
            self._log(f"pull-through: {label} stored, {human_size(file.size)} from {source.name}")
        else:  # another process on the store stored it while this one waited for its lock
            self._counted.add(joined=1)


def _check_header(partial: Path, job: FileJob) -> None:
    """What ``sync`` checks before it promotes a GGUF: its header agrees with its name."""
    [source] = job.sources
    if isinstance(source, HubSource) and source.path.lower().endswith(".gguf"):
        check_gguf(partial, source.path, label=job.label)


class _Counted(NoProgress):
    """The downloader's progress, as counters; the other counters, under the same lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats = PullStats()

    def advanced(self, job: FileJob, received: int) -> None:
        self.add(upstream_bytes=received)

    def add(self, **counts: int) -> None:
        with self._lock:
            now = self._stats
            self._stats = replace(now, **{name: getattr(now, name) + n for name, n in counts.items()})

    def snapshot(self) -> PullStats:
        with self._lock:
            return self._stats
