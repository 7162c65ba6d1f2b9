"""Fault injection for the mirror server: the knobs that reliability tests and benchmarks turn.

A fault is written ``KIND[=VALUE][,times=N][,file=GLOB][,on=WHERE]``, on the command line
(``--fault``) or in code (``Fault.parse``):

=================  =====================================================  =========================
kind               what happens                                           value
=================  =====================================================  =========================
``latency``        each matching request waits before it is answered      seconds (``50ms``, ``1.5s``)
``bandwidth``      file bodies are sent no faster than this, per response bytes/s (``50MB``, ``4MiB``)
``drop-after``     the connection is closed after this many body bytes    bytes (``15MB``)
``status``         the request is answered with this status (e.g. 503)    status code
``rate-limit``     the request is answered 429 with ``Retry-After``       seconds to wait (integer)
``corrupt``        file bodies are served with wrong bytes (same length)  none
``ignore-range``   ``Range`` is ignored: 200 and the whole file           none
``wrong-range``    a 206 claims another range than the one it sends       none
``bad-length``     the file is served one byte short, consistently        none
``redirect-loop``  ``resolve`` redirects a file to itself                 none
``stall``          the body pauses this long after its first chunk        seconds (``2s``, ``500ms``)
=================  =====================================================  =========================

``times=N`` applies the fault to the first N matching requests only (default: every one).
``file=GLOB`` limits it to requests for repo files whose path matches (``*.gguf``).
``on=`` limits it to one kind of request: ``api`` (metadata), ``resolve`` (``/resolve/``
HEAD and GET), ``cdn`` (the second origin that serves LFS bytes) or ``any`` (the default).
Faults about files (all but latency, status and rate-limit) only ever touch file requests.

Sizes take K/M/G (powers of 1000) or Ki/Mi/Gi (powers of 1024), with an optional ``B``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal, get_args

from alex_models.errors import UsageError

FaultKind = Literal[
    "latency", "bandwidth", "drop-after", "status", "rate-limit", "corrupt",
    "ignore-range", "wrong-range", "bad-length", "redirect-loop", "stall",
]  # fmt: skip
Scope = Literal["any", "api", "resolve", "cdn"]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
# Faults about a file's bytes or headers: they only ever match requests for a file.
BODY_FAULTS: frozenset[FaultKind] = frozenset(
    {
        "bandwidth",
        "drop-after",
        "corrupt",
        "ignore-range",
        "wrong-range",
        "bad-length",
        "redirect-loop",
        "stall",
    }
)
_NO_VALUE: frozenset[FaultKind] = frozenset(
    {"corrupt", "ignore-range", "wrong-range", "bad-length", "redirect-loop"}
)
_SCOPES: tuple[Scope, ...] = ("any", "api", "resolve", "cdn")
_SPEC_HELP = (
    "write KIND[=VALUE][,times=N][,file=GLOB][,on=any|api|resolve|cdn], e.g. 'drop-after=15MB,times=1'"
)

_SIZE_RE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[KMG]i?)?B?(?:/s)?", re.IGNORECASE)
_DURATION_RE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "ki": 2**10, "mi": 2**20, "gi": 2**30}


@dataclass(frozen=True)
class RequestInfo:
    """What a fault is matched against."""

    scope: Literal["api", "resolve", "cdn"]
    file: str | None
    """The repo path of the file the request is about, if any."""


@dataclass
class Fault:
    """One fault rule. ``value`` is in seconds, bytes, bytes/s or a status code, by ``kind``."""

    kind: FaultKind
    value: float = 0
    times: int | None = None
    file: str | None = None
    on: Scope = "any"
    hits: int = 0
    """How many requests this fault has been applied to so far."""

    def matches(self, request: RequestInfo) -> bool:
        if self.on not in ("any", request.scope):
            return False
        if self.file is not None and (request.file is None or not fnmatchcase(request.file, self.file)):
            return False
        return self.kind not in BODY_FAULTS or request.file is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Read a ``--fault`` spec; raise ``UsageError`` naming the spec if it is malformed."""
        head, *options = [part.strip() for part in spec.split(",")]
        kind, _, raw_value = head.partition("=")
        kind = kind.strip().lower()
        if kind not in FAULT_KINDS:
            raise UsageError(
                f"unknown fault kind {kind!r} in --fault {spec!r}", hint=f"kinds: {', '.join(FAULT_KINDS)}"
            )
        fault = cls(kind=kind, value=_parse_value(kind, raw_value.strip(), spec))
        for option in options:
            key, sep, value = option.partition("=")
            if not sep or not value:
                raise UsageError(f"--fault {spec!r}: expected key=value, got {option!r}", hint=_SPEC_HELP)
            if key == "times" and value.isdecimal():  # isdigit() also takes "²", which int() refuses
                fault.times = int(value)
            elif key == "file":
                fault.file = value
            elif key == "on" and value in _SCOPES:
                fault.on = value
            else:
                raise UsageError(f"--fault {spec!r}: bad option {option!r}", hint=_SPEC_HELP)
        return fault


def _parse_value(kind: FaultKind, raw: str, spec: str) -> float:
    if kind in _NO_VALUE:
        if raw:
            raise UsageError(f"--fault {spec!r}: {kind} takes no value", hint=_SPEC_HELP)
        return 0
    if not raw:
        raise UsageError(f"--fault {spec!r}: {kind} needs a value", hint=_SPEC_HELP)
    if kind in ("latency", "stall"):
        match = _DURATION_RE.fullmatch(raw)
        if match:
            return float(match["num"]) / (1000 if (match["unit"] or "").lower() == "ms" else 1)
    elif kind in ("bandwidth", "drop-after"):
        match = _SIZE_RE.fullmatch(raw)
        if match:
            size = int(float(match["num"]) * _UNITS[(match["unit"] or "").lower()])
            if size > 0 or kind == "drop-after":
                return size
    elif raw.isdecimal() and (kind == "rate-limit" or 400 <= int(raw) <= 599):
        return int(raw)
    raise UsageError(f"--fault {spec!r}: bad value {raw!r} for {kind}", hint=_SPEC_HELP)


class Faults:
    """The fault rules of one server; safe to change while the server runs."""

    def __init__(self, faults: list[Fault] | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults or [])

    def add(self, fault: Fault | str) -> Fault:
        rule = Fault.parse(fault) if isinstance(fault, str) else fault
        with self._lock:
            self._faults.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def take(self, kind: FaultKind, request: RequestInfo) -> Fault | None:
        """The first rule of ``kind`` that matches ``request`` and has uses left; counts the use."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and not fault.exhausted and fault.matches(request):
                    fault.hits += 1
                    return fault
        return None
