"""Scripted faults of the fake LLM server: what goes wrong, on which route, for which requests.

A :class:`Fault` applies to a route (``chat``, ``embeddings``, ``rerank``, ``models``; None means
all of them), to some request numbers of that route (1-based, counted per route; None means
every request) and with a probability (drawn from the server's seeded RNG, so a run is
repeatable). Several faults may apply to one request; :func:`combine` merges them.

Plain data and functions, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "CLOSE_POINTS",
    "STALL_POINTS",
    "FAULT_KINDS",
    "FAULT_ROUTES",
    "Effects",
    "Fault",
    "combine",
    "parse_fault_spec",
    "select_faults",
]

FAULT_KINDS = ("latency", "stall", "close", "trickle", "status", "malformed_json", "wrong_dim")
FAULT_ROUTES = ("chat", "embeddings", "rerank", "models")
# mid_request: after the request line and headers, before the body is read.
# before_response: after the whole request, before any byte of the answer.
# mid_response: after the status line, headers and half the body.
CLOSE_POINTS = ("mid_request", "before_response", "mid_response")
# before_response: no byte of the answer. mid_response: the status line, headers and half the
# body (of a streamed answer: half its events), then nothing.
STALL_POINTS = ("before_response", "mid_response")


def _numbers(requests: int | Iterable[int] | None) -> frozenset[int] | None:
    if requests is None:
        return None
    if isinstance(requests, int):
        return frozenset({requests})
    return frozenset(requests)


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour. Build it with the class methods, e.g.
    ``Fault.status(503, retry_after=1, route="chat", requests={1, 2})``."""

    kind: str
    route: str | None = None
    requests: frozenset[int] | None = None
    probability: float = 1.0
    seconds: float = 0.0
    bytes_per_second: float = 0.0
    status_code: int = 0
    retry_after: str | None = None
    dim: int = 0
    at: str = "before_response"
    in_body: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "requests", _numbers(self.requests))
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        if self.route is not None and self.route not in FAULT_ROUTES:
            raise ValueError(f"unknown route {self.route!r}; routes: {', '.join(FAULT_ROUTES)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.kind == "stall" and self.at not in STALL_POINTS:
            raise ValueError(f"stall at {self.at!r}; allowed: {', '.join(STALL_POINTS)}")
        if self.kind == "close" and self.at not in CLOSE_POINTS:
            raise ValueError(f"close at {self.at!r}; allowed: {', '.join(CLOSE_POINTS)}")
        if self.kind == "trickle" and self.bytes_per_second <= 0:
            raise ValueError("trickle needs bytes_per_second > 0")
        if self.kind == "status" and not 100 <= self.status_code <= 599:
            raise ValueError("status needs an HTTP status code")
        if self.kind == "wrong_dim" and self.dim < 1:
            raise ValueError("wrong_dim needs a dimension >= 1")
        if self.kind == "latency" and self.seconds < 0:
            raise ValueError("latency needs seconds >= 0")

    @classmethod
    def latency(cls, seconds: float, **when) -> Fault:
        """Wait ``seconds`` before answering."""
        return cls("latency", seconds=seconds, **when)

    @classmethod
    def stall(cls, at: str = "before_response", **when) -> Fault:
        """Never answer (until :meth:`FakeLLM.recover`); the connection stays open. ``at``:
        before any byte of the answer, or ``mid_response``, after half of it (half of a
        streamed answer's events: a model that stops writing)."""
        return cls("stall", at=at, **when)

    @classmethod
    def close(cls, at: str = "before_response", **when) -> Fault:
        """Close the connection at ``at`` (one of :data:`CLOSE_POINTS`)."""
        return cls("close", at=at, **when)

    @classmethod
    def trickle(cls, bytes_per_second: float, **when) -> Fault:
        """Send the answer's body at ``bytes_per_second``."""
        return cls("trickle", bytes_per_second=bytes_per_second, **when)

    @classmethod
    def status(cls, code: int, retry_after: float | str | None = None, **when) -> Fault:
        """Answer ``code`` with an OpenAI-style error body, and ``Retry-After`` when given
        (a number of seconds, or any text such as an HTTP date)."""
        header = None if retry_after is None else (retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        return cls("status", status_code=code, retry_after=header, **when)

    @classmethod
    def malformed_json(cls, in_body: bool = False, **when) -> Fault:
        """Chat: a valid envelope whose message content is broken JSON (``in_body=True``: the
        HTTP body itself is cut short). Other routes: the HTTP body is broken JSON."""
        return cls("malformed_json", in_body=in_body, **when)

    @classmethod
    def wrong_dim(cls, dim: int, **when) -> Fault:
        """Embeddings of ``dim`` floats whatever was asked."""
        return cls("wrong_dim", dim=dim, **when)

    def matches(self, route: str, number: int) -> bool:
        """Whether this fault targets request ``number`` of ``route`` (probability aside)."""
        if self.route is not None and self.route != route:
            return False
        return self.requests is None or number in self.requests


@dataclass
class Effects:
    """What to do to one request: the merge of every fault that applies to it."""

    latency_seconds: float = 0.0
    stall: bool = False
    stall_mid_response: bool = False
    close_at: str | None = None
    trickle_bytes_per_second: float | None = None
    status_code: int | None = None
    retry_after: str | None = None
    malformed_json: bool = False
    malformed_body: bool = False
    wrong_dim: int | None = None
    kinds: list[str] = field(default_factory=list)


def select_faults(faults: Sequence[Fault], route: str, number: int, rng: random.Random) -> list[Fault]:
    """The faults that apply to request ``number`` of ``route``. The RNG is drawn only for
    faults with probability below 1, so adding a certain fault does not shift the others."""
    chosen = []
    for fault in faults:
        if not fault.matches(route, number):
            continue
        if fault.probability < 1.0 and rng.random() >= fault.probability:
            continue
        chosen.append(fault)
    return chosen


def combine(faults: Iterable[Fault]) -> Effects:
    """Merge faults: latencies add up, the earliest close point wins, the first status, trickle
    rate and dimension win."""
    effects = Effects()
    for fault in faults:
        effects.kinds.append(fault.kind)
        if fault.kind == "latency":
            effects.latency_seconds += fault.seconds
        elif fault.kind == "stall" and fault.at == "mid_response":
            effects.stall_mid_response = True
        elif fault.kind == "stall":
            effects.stall = True
        elif fault.kind == "close":
            if effects.close_at is None or CLOSE_POINTS.index(fault.at) < CLOSE_POINTS.index(effects.close_at):
                effects.close_at = fault.at
        elif fault.kind == "trickle" and effects.trickle_bytes_per_second is None:
            effects.trickle_bytes_per_second = fault.bytes_per_second
        elif fault.kind == "status" and effects.status_code is None:
            effects.status_code = fault.status_code
            effects.retry_after = fault.retry_after
        elif fault.kind == "malformed_json":
            effects.malformed_json = True
            effects.malformed_body = effects.malformed_body or fault.in_body
        elif fault.kind == "wrong_dim" and effects.wrong_dim is None:
            effects.wrong_dim = fault.dim
    return effects


def _parse_requests(text: str) -> frozenset[int]:
    numbers: set[int] = set()
    for part in text.split("+"):
        low, _, high = part.partition("-")
        start = int(low)
        numbers.update(range(start, int(high) + 1) if high else (start,))
    return frozenset(numbers)


def parse_fault_spec(spec: str) -> Fault:
    """A fault from its command-line form ``KIND[=VALUE][,option=value…]``.

    VALUE is the kind's argument: seconds for ``latency``, bytes per second for ``trickle``, the
    status code for ``status``, the dimension for ``wrong_dim``, the close point for ``close``,
    the stall point for ``stall`` (default ``before_response``).
    Options: ``route=chat``, ``requests=1-3+7`` (numbers and ranges joined by ``+``), ``p=0.2``,
    ``retry_after=2`` (status), ``in_body=1`` (malformed_json). Examples::

        stall,route=chat
        stall=mid_response,route=chat
        status=429,retry_after=2,requests=1-3
        latency=1.5,p=0.1

    Raises:
        ValueError: the spec cannot be read; the message says why.
    """
    head, *options = [item.strip() for item in spec.split(",") if item.strip()]
    kind, _, value = head.partition("=")
    when: dict[str, object] = {}
    retry_after: str | None = None
    in_body = False
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep:
            raise ValueError(f"fault option {option!r} is not key=value")
        if key == "route":
            when["route"] = raw
        elif key == "requests":
            when["requests"] = _parse_requests(raw)
        elif key in ("p", "probability"):
            when["probability"] = float(raw)
        elif key == "retry_after":
            retry_after = raw
        elif key == "in_body":
            in_body = raw.lower() in ("1", "true", "yes")
        else:
            raise ValueError(f"unknown fault option {key!r}; options: route, requests, p, retry_after, in_body")
    if kind == "latency":
        return Fault.latency(float(value), **when)
    if kind == "stall":
        return Fault.stall(value or "before_response", **when)
    if kind == "close":
        return Fault.close(value or "before_response", **when)
    if kind == "trickle":
        return Fault.trickle(float(value), **when)
    if kind == "status":
        return Fault.status(int(value), retry_after=retry_after, **when)
    if kind == "malformed_json":
        return Fault.malformed_json(in_body=in_body, **when)
    if kind == "wrong_dim":
        return Fault.wrong_dim(int(value), **when)
    raise ValueError(f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}")
