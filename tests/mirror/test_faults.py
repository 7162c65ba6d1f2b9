"""Each fault knob of the mirror, seen from the client and from the server's request log."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest
from helpers import sha256

from alex_models.errors import UsageError
from alex_models.mirror import Fault, Faults, MirrorRoot, MirrorServer, RequestRecord

REPO = "org/model"
WEIGHTS = hashlib.shake_256(b"weights").digest(2_000_000)  # LFS: served by the CDN origin
NOTES = hashlib.shake_256(b"notes").digest(200_000)  # plain git file: served in place by /resolve


@dataclass
class Hub:
    server: MirrorServer
    client: httpx2.Client
    seen: int = 0
    """How many request records the test has looked at."""

    @property
    def faults(self) -> Faults:
        return self.server.faults

    def api(self) -> httpx2.Response:
        return self.client.get(f"{self.server.url}/api/models/{REPO}")

    def resolve(self, path: str, **kwargs: Any) -> httpx2.Response:
        return self.client.get(f"{self.server.url}/{REPO}/resolve/main/{path}", **kwargs)

    def cdn_url(self) -> str:
        """A signed CDN URL for the LFS file, taken while no fault is set."""
        response = self.client.head(f"{self.server.url}/{REPO}/resolve/main/weights.gguf")
        assert response.status_code == 302
        self.next_record()
        return response.headers["Location"]

    def next_record(self) -> RequestRecord:
        """The next request in the server's log, waiting for it: a request is logged after its last
        byte is sent, which can be a moment after the client has read it."""
        log = self.server.wait_log(lambda log: len(log) > self.seen)
        assert len(log) > self.seen, "the server logged no further request"
        self.seen += 1
        return log[self.seen - 1]


@pytest.fixture
def hub(mirror_root: MirrorRoot, mirror: MirrorServer) -> Iterator[Hub]:
    mirror_root.commit(REPO, {"weights.gguf": WEIGHTS, "notes.txt": NOTES, "config.json": b"{}\n"})
    with httpx2.Client(follow_redirects=False, timeout=10) as client:
        yield Hub(mirror, client)


def elapsed(action: Any) -> tuple[float, Any]:
    began = time.monotonic()
    result = action()
    return time.monotonic() - began, result


# -- request faults --------------------------------------------------------------------------------------


def test_latency_delays_each_matching_request(hub: Hub) -> None:
    hub.faults.add("latency=300ms,times=1")

    took, response = elapsed(hub.api)
    record = hub.next_record()
    hub.api()
    second = hub.next_record()

    assert response.status_code == 200
    assert took >= 0.3  # a lower bound only: a loaded machine may be slower, never faster
    assert record.faults == ("latency",)
    assert second.faults == ()


def test_status_fault_answers_that_status_then_recovers(hub: Hub) -> None:
    hub.faults.add("status=503,times=2")

    statuses = [hub.api().status_code for _ in range(3)]
    records = [hub.next_record() for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert [(r.status, r.faults) for r in records] == [(503, ("status",)), (503, ("status",)), (200, ())]


def test_rate_limit_answers_429_with_retry_after(hub: Hub) -> None:
    hub.faults.add("rate-limit=3")

    response = hub.api()
    record = hub.next_record()

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert (record.status, record.faults) == (429, ("rate-limit",))


# -- body faults ------------------------------------------------------------------------------------


def test_bandwidth_caps_the_body_rate(hub: Hub) -> None:
    url = hub.cdn_url()
    hub.faults.add("bandwidth=8MB")  # 2 MB at 8 MB/s: 0.25 s at the very least

    took, response = elapsed(lambda: hub.client.get(url))
    record = hub.next_record()

    assert took >= 0.2
    assert response.content == WEIGHTS
    assert (record.bytes_sent, record.faults) == (len(WEIGHTS), ("bandwidth",))


def read_until_dropped(client: httpx2.Client, url: str, **kwargs: Any) -> tuple[int, bytes]:
    """The status and the body bytes received before the server closed the connection mid-body."""
    received = bytearray()

    def collect(chunks: Iterator[bytes]) -> None:
        for chunk in chunks:
            received.extend(chunk)

    with client.stream("GET", url, **kwargs) as response:
        with pytest.raises(httpx2.RemoteProtocolError, match="peer closed connection"):
            collect(response.iter_bytes())
        return response.status_code, bytes(received)


def test_drop_after_closes_the_connection_after_n_bytes_once(hub: Hub) -> None:
    url = hub.cdn_url()
    hub.faults.add("drop-after=100000,times=1")

    status, received = read_until_dropped(hub.client, url)
    dropped = hub.next_record()
    retry = hub.client.get(url)
    complete = hub.next_record()

    assert status == 200
    assert received == WEIGHTS[:100_000]
    assert (dropped.bytes_sent, dropped.faults) == (100_000, ("drop-after",))
    assert retry.content == WEIGHTS
    assert (complete.bytes_sent, complete.faults) == (len(WEIGHTS), ())


def test_drop_after_counts_from_the_start_of_a_range(hub: Hub) -> None:
    url = hub.cdn_url()
    hub.faults.add("drop-after=1000,times=1")

    status, received = read_until_dropped(hub.client, url, headers={"Range": "bytes=500000-"})

    assert status == 206
    assert received == WEIGHTS[500_000:501_000]
    assert hub.next_record().bytes_sent == 1000


@pytest.mark.parametrize("where", ["cdn", "resolve"])
def test_corrupt_serves_same_length_different_bytes(hub: Hub, where: str) -> None:
    url, data = (
        (hub.cdn_url(), WEIGHTS)
        if where == "cdn"
        else (f"{hub.server.url}/{REPO}/resolve/main/notes.txt", NOTES)
    )
    hub.faults.add("corrupt")

    response = hub.client.get(url)
    record = hub.next_record()

    assert response.status_code == 200
    assert len(response.content) == len(data)
    assert sha256(response.content) != sha256(data)
    assert record.faults == ("corrupt",)


@pytest.mark.parametrize(
    "byte_range", ["bytes=0-99", "bytes=1-100", "bytes=70000-70001", "bytes=-10", "bytes=65536-"]
)
def test_corrupt_also_changes_every_range(hub: Hub, byte_range: str) -> None:
    url = hub.cdn_url()
    expected = hub.client.get(url, headers={"Range": byte_range}).content
    hub.faults.add("corrupt")

    response = hub.client.get(url, headers={"Range": byte_range})

    assert response.status_code == 206
    assert len(response.content) == len(expected)
    assert response.content != expected


# -- scoping: file=GLOB and on=WHERE --------------------------------------------------------------------


def test_file_glob_limits_a_fault_to_matching_files(hub: Hub) -> None:
    url = hub.cdn_url()
    hub.faults.add("status=503,file=*.gguf")
    hub.faults.add("corrupt,file=notes.*")

    assert hub.client.head(f"{hub.server.url}/{REPO}/resolve/main/weights.gguf").status_code == 503
    assert hub.client.get(url).status_code == 503
    assert hub.resolve("config.json").content == b"{}\n"
    assert hub.api().status_code == 200  # metadata is about no file: a file fault never matches it
    assert hub.resolve("notes.txt").content != NOTES


SCOPED_REQUESTS = ("api", "resolve", "cdn")


@pytest.mark.parametrize("scope", SCOPED_REQUESTS)
def test_on_limits_a_fault_to_one_kind_of_request(hub: Hub, scope: str) -> None:
    url = hub.cdn_url()
    hub.faults.add(f"status=503,on={scope}")

    statuses = {
        "api": hub.api().status_code,
        "resolve": hub.resolve("notes.txt").status_code,
        "cdn": hub.client.get(url).status_code,
    }

    assert statuses == {where: 503 if where == scope else 200 for where in SCOPED_REQUESTS}


@pytest.mark.parametrize("scope", ["resolve", "cdn"])
def test_on_limits_a_body_fault_to_one_origin(hub: Hub, scope: str) -> None:
    url = hub.cdn_url()
    hub.faults.add(f"corrupt,on={scope}")

    resolve_intact = hub.resolve("notes.txt").content == NOTES
    cdn_intact = hub.client.get(url).content == WEIGHTS

    assert (resolve_intact, cdn_intact) == (scope != "resolve", scope != "cdn")


def test_cleared_faults_stop_applying(hub: Hub) -> None:
    hub.faults.add("status=500")
    assert hub.api().status_code == 500

    hub.faults.clear()

    assert hub.api().status_code == 200


# -- the --fault grammar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("latency=50ms", Fault("latency", 0.05)),
        ("latency=1.5s", Fault("latency", 1.5)),
        ("latency=2", Fault("latency", 2)),
        ("LATENCY=50MS", Fault("latency", 0.05)),
        ("bandwidth=4MiB", Fault("bandwidth", 4_194_304)),
        ("bandwidth=50MB/s", Fault("bandwidth", 50_000_000)),
        ("bandwidth=1.5k", Fault("bandwidth", 1500)),
        ("drop-after=15MB", Fault("drop-after", 15_000_000)),
        ("drop-after=15MB,times=1", Fault("drop-after", 15_000_000, times=1)),
        ("drop-after=0", Fault("drop-after", 0)),
        ("drop-after=2Gi", Fault("drop-after", 2 * 2**30)),
        ("status=503,times=2", Fault("status", 503, times=2)),
        ("rate-limit=3", Fault("rate-limit", 3)),
        ("corrupt", Fault("corrupt")),
        ("corrupt, file=*.gguf, on=cdn", Fault("corrupt", file="*.gguf", on="cdn")),
        ("latency=10ms,on=api,times=4,file=sub/*.json", Fault("latency", 0.01, 4, "sub/*.json", "api")),
    ],
)
def test_fault_spec_parses_to_its_values(spec: str, expected: Fault) -> None:
    fault = Fault.parse(spec)

    assert (fault.kind, fault.times, fault.file, fault.on) == (
        expected.kind,
        expected.times,
        expected.file,
        expected.on,
    )
    assert fault.value == pytest.approx(expected.value)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "bogus",
        "bogus=1",
        "latency",
        "latency=",
        "latency=fast",
        "latency=-1s",
        "latency=5m",
        "bandwidth=0",
        "bandwidth=10XB",
        "drop-after=-1",
        "drop-after=1TB",
        "status=200",
        "status=600",
        "status=abc",
        "rate-limit=1.5",
        "corrupt=yes",
        "latency=1s,times=x",
        "latency=1s,times=-1",
        "latency=1s,times",
        "latency=1s,times=",
        "latency=1s,on=disk",
        "latency=1s,file=",
        "latency=1s,colour=red",
        "latency=1s,",
        "status=\u00b2",  # a digit to str.isdigit(), not to int()
        "rate-limit=\u00b3",
        "latency=1s,times=\u00b2",
    ],
)
def test_malformed_fault_spec_is_a_usage_error_naming_it(spec: str) -> None:
    with pytest.raises(UsageError) as excinfo:
        Fault.parse(spec)

    assert repr(spec) in str(excinfo.value)
