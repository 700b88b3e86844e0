"""A fake OpenAI-compatible server on raw trio sockets and h11, able to misbehave byte by byte.

Routes (each also without the ``/v1`` prefix)::

    POST /v1/chat/completions   a topic tree or a classification (see _fake_answers)
    POST /v1/embeddings         deterministic vectors; ``dimensions`` in the body, else ``dim``
    POST /v1/rerank             results[{index, relevance_score, document}] by word overlap
    GET  /v1/models             the one model
    GET  /metrics               JSON counters (never faulted): requests per route, open
                                connections, connections closed by the peer, abandoned requests

Use in-process::

    fake = FakeLLM(script=[Fault.stall(route="chat", requests={1})])
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve, "127.0.0.1", 0)
        ...  # talk to fake.base_url (http://127.0.0.1:PORT/v1)
        nursery.cancel_scope.cancel()

The server watches every connection while it prepares an answer, so it notices at once when a
client gives up (``requests_abandoned`` in :meth:`FakeLLM.metrics`); it then drops the answer.
"""

from __future__ import annotations

import collections
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import h11
import trio

from everos.testing._fake_routes import Answer, build_answer, json_answer
from everos.testing._faults import FAULT_ROUTES, Effects, Fault, combine, select_faults
from everos.testing._slots import ModelSpeed, SlotModel

__all__ = ["FakeLLM", "RecordedRequest"]

_ROUTES = {
    "/chat/completions": ("chat", b"POST"),
    "/embeddings": ("embeddings", b"POST"),
    "/rerank": ("rerank", b"POST"),
    "/models": ("models", b"GET"),
}
SLOTTED_ROUTES = ("chat", "embeddings")  # the model's work; /models and /rerank answer at once
_MAX_BODY_BYTES = 16 * 1024 * 1024
_TRICKLE_TICK_SECONDS = 0.05


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake saw it: route, per-route number, headers (lowercased) and the
    decoded JSON body (None when absent or not JSON)."""

    route: str
    number: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class _ConnectionDone(Exception):
    """Stop serving this connection (closed by either side)."""


class FakeLLM:
    """The fake server. ``script`` lists :class:`Fault` s; ``seed`` drives probabilistic ones.

    ``dim`` is the default embedding width, ``model`` the model name answered,
    ``supports_response_format=False`` makes chat reject ``response_format`` with a 400 as some
    servers do, ``fence_json=True`` wraps chat JSON in a ```json fence, and ``api_key``, when
    set, is required as a Bearer token (401 otherwise). ``speed`` makes it as slow as a local
    model server: chat and embedding answers wait for one of ``speed.slots`` slots and hold it for
    their tokens' time (:mod:`everos.testing._slots`); ``metrics()["model"]`` reports the slots.
    Faults apply on top (a latency or a stall comes before the slot).
    """

    def __init__(
        self,
        script: Sequence[Fault] = (),
        *,
        seed: int = 0,
        dim: int = 384,
        model: str = "fake-model",
        supports_response_format: bool = True,
        fence_json: bool = False,
        api_key: str | None = None,
        speed: ModelSpeed | None = None,
    ) -> None:
        self.dim = dim
        self.slots = SlotModel(speed) if speed is not None else None
        self.model = model
        self.supports_response_format = supports_response_format
        self.fence_json = fence_json
        self.api_key = api_key
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.requests: collections.deque[RecordedRequest] = collections.deque(maxlen=200)
        self._faults = list(script)
        self._rng = random.Random(seed)
        self._counts: collections.Counter[str] = collections.Counter()
        self._faults_applied: collections.Counter[str] = collections.Counter()
        self._connections_total = 0
        self._open_connections = 0
        self._closed_by_peer = 0
        self._closed_by_fault = 0
        self._abandoned = 0
        self._build_limiter = trio.CapacityLimiter(2)
        self._changed: trio.Event | None = None
        self._recovered: trio.Event | None = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` once :meth:`serve` has started."""
        if self.port is None:
            raise RuntimeError("the fake LLM is not serving yet; start it with nursery.start(fake.serve)")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/v1"

    def set_faults(self, faults: Sequence[Fault]) -> None:
        """Replace the script; applies to requests that arrive from now on."""
        self._faults = list(faults)

    def recover(self) -> None:
        """Drop every fault and release stalled requests (they answer normally now)."""
        self._faults = []
        if self._recovered is not None:
            self._recovered.set()
            self._recovered = None

    def metrics(self) -> dict[str, Any]:
        """The counters ``GET /metrics`` answers with (plain data)."""
        return {
            "requests": {route: self._counts[route] for route in ("chat", "embeddings", "rerank", "models", "other")},
            "connections_total": self._connections_total,
            "open_connections": self._open_connections,
            "connections_closed_by_peer": self._closed_by_peer,
            "connections_closed_by_fault": self._closed_by_fault,
            "requests_abandoned": self._abandoned,
            "faults_applied": dict(sorted(self._faults_applied.items())),
            **({"model": self.slots.metrics()} if self.slots is not None else {}),
        }

    async def wait_until(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Block until ``predicate(self.metrics())`` holds; return those metrics. Has no deadline
        of its own: wrap it in ``trio.fail_after``."""
        while True:
            metrics = self.metrics()
            if predicate(metrics):
                await trio.lowlevel.checkpoint()
                return metrics
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    async def serve(
        self, host: str = "127.0.0.1", port: int = 0, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``host:port`` (0 picks a free port), report the port, serve until cancelled."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.host = host
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle_connection, listeners)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        self._connections_total += 1
        self._open_connections += 1
        self._notify()
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                await self._serve_one(stream, connection)
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    break
                connection.start_next_cycle()
        except _ConnectionDone:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            self._closed_by_peer += 1
        finally:
            self._open_connections -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()
            self._notify()

    async def _next_event(self, stream: trio.SocketStream, connection: h11.Connection) -> Any:
        while True:
            event = connection.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await stream.receive_some(65536)
            connection.receive_data(data)  # b"" tells h11 the peer closed

    async def _serve_one(self, stream: trio.SocketStream, connection: h11.Connection) -> None:
        event = await self._next_event(stream, connection)
        if isinstance(event, h11.ConnectionClosed):
            self._closed_by_peer += 1
            raise _ConnectionDone
        if not isinstance(event, h11.Request):
            raise _ConnectionDone
        path = event.target.decode("latin-1").split("?", 1)[0]
        route, method = self._route(path)
        self._counts[route] += 1
        number = self._counts[route]
        faults = select_faults(self._faults, route, number, self._rng) if route in FAULT_ROUTES else []
        effects = combine(faults)
        self._faults_applied.update(effects.kinds)
        self._notify()
        if effects.close_at == "mid_request":
            self._closed_by_fault += 1
            raise _ConnectionDone
        raw = bytearray()
        while True:
            part = await self._next_event(stream, connection)
            if isinstance(part, h11.Data):
                raw += part.data
                if len(raw) > _MAX_BODY_BYTES:
                    raise _ConnectionDone
            elif isinstance(part, h11.EndOfMessage):
                break
            else:
                raise _ConnectionDone
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in event.headers}
        body = _json_or_none(bytes(raw))
        self.requests.append(RecordedRequest(route, number, event.method.decode(), path, headers, body))
        if effects.close_at == "before_response":
            self._closed_by_fault += 1
            raise _ConnectionDone
        if route == "metrics":
            build = partial(json_answer, 200, self.metrics())
        else:
            build = partial(build_answer, self, route, number, allowed_method=method, method=event.method,
                            headers=headers, body=body, effects=effects)
        await self._respond(stream, connection, effects, build, route)

    def _route(self, path: str) -> tuple[str, bytes | None]:
        if path == "/metrics":
            return "metrics", b"GET"
        trimmed = path[3:] if path.startswith("/v1/") else path
        return _ROUTES.get(trimmed, ("other", None))

    async def _respond(
        self, stream: trio.SocketStream, connection: h11.Connection, effects: Effects, build: Callable[[], Answer],
        route: str,
    ) -> None:
        """Wait, answer and send, while watching the connection for the peer giving up."""
        peer_closed = False
        finished = False
        early_bytes: list[bytes] = []

        async def watch_peer(cancel_scope: trio.CancelScope) -> None:
            nonlocal peer_closed
            while True:
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:
                    peer_closed = True
                    cancel_scope.cancel()
                    return
                early_bytes.append(data)  # a pipelined next request: h11 gets it afterwards

        # Errors are carried out of the nursery by hand: a nursery would wrap them in a group.
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_peer, nursery.cancel_scope)
            try:
                if effects.latency_seconds:
                    await trio.sleep(effects.latency_seconds)
                if effects.stall:
                    await self._wait_for_recovery()
                # Answers are built in a thread: an in-process fake must not add event-loop lag
                # to the server under test (G5). Pure work on private data: abandoning is safe.
                answer = await trio.to_thread.run_sync(build, limiter=self._build_limiter, abandon_on_cancel=True)
                slotted = self.slots is not None and route in SLOTTED_ROUTES and answer.status == 200
                usage = json.loads(answer.body).get("usage", {}) if slotted else {}
                # A streamed answer is sent from inside its slot, over the decode time.
                emit = None if answer.events is None else partial(
                    self._send_events, stream, connection, answer, effects)
                if slotted:
                    await self.slots.run(route, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0),
                                         emit=emit)
                elif emit is not None:
                    await emit(0.0)
                if emit is None:
                    await self._send(stream, connection, answer, effects)
                finished = True
            except (_ConnectionDone, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                error = exc
            nursery.cancel_scope.cancel()
        for data in early_bytes:
            connection.receive_data(data)
        if peer_closed:
            # ``finished`` is decided after the nursery joined, so a client that closes right
            # after reading a complete answer is not counted as having abandoned it.
            self._closed_by_peer += 1
            if not finished:
                self._abandoned += 1
            raise _ConnectionDone
        if error is not None:
            raise error

    async def _send_events(
        self, stream: trio.SocketStream, connection: h11.Connection, answer: Answer, effects: Effects,
        decode_seconds: float,
    ) -> None:
        """A streamed answer: its events spread over ``decode_seconds`` (chunked transfer), with
        the stall and close faults that apply halfway."""
        events = answer.events or []
        headers = [("content-type", "text/event-stream"), ("cache-control", "no-cache"),
                   ("server", "everos-fake-llm"), *answer.headers]
        await stream.send_all(connection.send(h11.Response(status_code=answer.status, headers=headers)))
        gap = decode_seconds / max(1, len(events) - 1)
        for index, event in enumerate(events):
            if index == len(events) // 2:
                if effects.close_at == "mid_response":
                    self._closed_by_fault += 1
                    raise _ConnectionDone
                if effects.stall_mid_response:
                    await self._wait_for_recovery()
            if index and gap:
                await trio.sleep(gap)
            await stream.send_all(connection.send(h11.Data(data=event)))
        await stream.send_all(connection.send(h11.EndOfMessage()))

    async def _wait_for_recovery(self) -> None:
        if self._recovered is None:
            self._recovered = trio.Event()
        await self._recovered.wait()

    async def _send(
        self, stream: trio.SocketStream, connection: h11.Connection, answer: Answer, effects: Effects
    ) -> None:
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(answer.body))),
            ("server", "everos-fake-llm"),
            *answer.headers,
        ]
        await stream.send_all(connection.send(h11.Response(status_code=answer.status, headers=headers)))
        body = answer.body
        if effects.close_at == "mid_response":
            await stream.send_all(connection.send(h11.Data(data=body[: len(body) // 2])))
            self._closed_by_fault += 1
            raise _ConnectionDone
        if effects.stall_mid_response:
            await stream.send_all(connection.send(h11.Data(data=body[: len(body) // 2])))
            await self._wait_for_recovery()
            body = body[len(body) // 2:]
        if effects.trickle_bytes_per_second:
            chunk = max(1, int(effects.trickle_bytes_per_second * _TRICKLE_TICK_SECONDS))
            for start in range(0, len(body), chunk):
                await stream.send_all(connection.send(h11.Data(data=body[start : start + chunk])))
                await trio.sleep(chunk / effects.trickle_bytes_per_second)
        elif body:
            await stream.send_all(connection.send(h11.Data(data=body)))
        await stream.send_all(connection.send(h11.EndOfMessage()))


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
