"""What one client can hold of the server (issue #16 item 3): a connection, and time to send a body.

A client that opens connections and never finishes a request (slowloris) must not use up the
server's file descriptors or its tasks. Three bounds, each enforced where it can be:

- **A request head in time**: hypercorn's idle timer (``[api] idle_timeout_seconds``, its
  ``keep_alive_timeout``) runs from a connection's opening, and again from each answer, until the
  next request's headers are complete; past it the connection is closed. Headers sent a byte a
  second are cut there; their size is capped by ``h11_max_incomplete_size``
  (:func:`hypercorn_config` says what each setting does).
- **A body in time** (:class:`BodyDeadline`): once the head is in, hypercorn has no timer, so this
  layer gives the body ``[api] body_timeout_seconds`` plus one second for every
  ``body_min_rate_bytes`` received, Apache mod_reqtimeout's rule: a large upload on a slow link
  goes through, a body trickled a byte a second gets 408 ``REQUEST_BODY_TIMEOUT`` and a closed
  connection.
- **A cap on open connections** (:class:`ConnectionCap`, counted by the TCP server in
  ``_tcp.py``): a new connection beyond ``[api] max_connections`` is answered 503 at once and
  closed, so the descriptors the server's own work needs (SQLite, LanceDB, logs, worker pipes)
  stay free even under ``ulimit -n 256``. The default leaves ``FD_RESERVE`` descriptors of the
  open-file limit to that work.
"""

from __future__ import annotations

import logging
import resource
from typing import Any

import hypercorn.config
import trio

from everos.errors import RequestBodyTimeout
from everos.web._envelope import dumps, error_body, error_body_for, error_headers, mint_request_id, pick_request_id

__all__ = ["FD_RESERVE", "MAX_CONNECTIONS_DEFAULT_CAP", "BodyDeadline", "ConnectionCap", "hypercorn_config"]

# Descriptors of the open-file limit kept for the server's own work when [api] max_connections is 0.
FD_RESERVE = 128
MAX_CONNECTIONS_DEFAULT_CAP = 1024
# Refused connections answered and drained at once, at most; beyond, they are closed unanswered.
_REFUSING_AT_ONCE = 32
_REFUSE_SECONDS = 0.5


class ConnectionCap:
    """How many connections are open, and how many may be. Used on the event loop only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._refusing = 0

    @classmethod
    def for_setting(cls, max_connections: int) -> ConnectionCap:
        """``max_connections``, or for 0 the open-file soft limit less :data:`FD_RESERVE` (at least
        16, at most :data:`MAX_CONNECTIONS_DEFAULT_CAP`), read now: after the server raised it."""
        if max_connections > 0:
            return cls(max_connections)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        available = MAX_CONNECTIONS_DEFAULT_CAP if soft == resource.RLIM_INFINITY else soft - FD_RESERVE
        return cls(max(16, min(MAX_CONNECTIONS_DEFAULT_CAP, available)))

    def snapshot(self) -> dict[str, int]:
        """The /health block: open, the limit, refused since the start. Not a checkpoint."""
        return {"open_connections": self.open, "max_connections": self.limit, "refused_connections": self.refused}

    async def refuse(self, stream: trio.abc.Stream) -> None:
        """Answer a connection over the cap 503 ``SERVICE_UNAVAILABLE`` (``Retry-After: 1``) without
        reading its request, and close it; bounded to ``_REFUSE_SECONDS``. Beyond
        ``_REFUSING_AT_ONCE`` refusals in flight, close it unanswered: a flood must not hold more
        descriptors here than the cap saves."""
        self.refused += 1
        if self._refusing >= _REFUSING_AT_ONCE:
            await stream.aclose()
            return
        self._refusing += 1
        try:
            with trio.move_on_after(_REFUSE_SECONDS):
                body = dumps(error_body(mint_request_id(), code="SERVICE_UNAVAILABLE", path="",
                                        message=f"the server has its {self.limit} connections open; try again"))
                head = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
                        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
                await stream.send_all(head + body)
                await stream.send_eof()
                # Read what the client sent, so the close does not reset the connection before it
                # has read the answer.
                while await stream.receive_some(65536):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._refusing -= 1
            await stream.aclose()


class BodyDeadline:
    """The time a request's body may take: ``timeout_s`` plus a second for every
    ``min_rate_bytes`` received. Wraps one app call; the wait for a body chunk past that time
    cancels the app and, if no answer has started, answers 408 ``REQUEST_BODY_TIMEOUT`` with
    ``Connection: close``. Once the body is complete, receive passes through unbounded (an app
    waits there for the client's disconnect)."""

    def __init__(self, timeout_s: float, min_rate_bytes: int) -> None:
        self.timeout_s = timeout_s
        self.min_rate_bytes = min_rate_bytes

    async def __call__(self, app: Any, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        started_at = trio.current_time()
        state = {"received": 0, "complete": False, "answered": False, "timed_out": False}
        cancel_scope = trio.CancelScope()

        async def timed_receive() -> dict:
            if state["complete"]:
                return await receive()
            deadline = started_at + self.timeout_s + state["received"] / self.min_rate_bytes
            with trio.move_on_at(deadline) as waited:
                message = await receive()
            if waited.cancelled_caught:
                state["timed_out"] = True
                cancel_scope.cancel()
                await trio.lowlevel.checkpoint()  # raises Cancelled: the app is being cancelled
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                state["complete"] = not message.get("more_body", False)
            return message

        async def tracking_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["answered"] = True
            await send(message)

        with cancel_scope:
            await app(scope, timed_receive, tracking_send)
        if state["timed_out"] and not state["answered"]:
            incoming = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"x-request-id"),
                            None)
            request_id = pick_request_id(incoming)
            exc = RequestBodyTimeout(
                f"the request body did not arrive in time ({state['received']} bytes in "
                f"{trio.current_time() - started_at:.0f} s; allowed: {self.timeout_s:g} s plus one a "
                f"{self.min_rate_bytes} bytes)")
            body = dumps(error_body_for(request_id, exc, scope["path"]))
            await send({"type": "http.response.start", "status": exc.status,
                        "headers": [*error_headers(request_id, exc, close=True),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


def hypercorn_config(api: Any, cap: ConnectionCap) -> hypercorn.config.Config:
    """Hypercorn's settings for ``[api]`` (an ``ApiSettings``), each chosen on purpose:

    - ``bind``: ``host:port``.
    - ``keep_alive_timeout`` = ``idle_timeout_seconds`` (5 s, hypercorn's default and httpx's
      keep-alive expiry): the idle timer from a connection's opening or its last answer until a
      request's headers are complete. It closes idle keep-alive connections *and* bounds a slow
      head; a connection its client closed is released at once (``use_prompt_close``).
    - ``read_timeout`` stays None: it bounds each socket read, which a client sending a byte a
      second never trips; the idle timer and :class:`BodyDeadline` bound the whole head and body.
    - ``h11_max_incomplete_size`` stays 16 KiB: a request head larger than that is refused (431).
    - ``keep_alive_max_requests`` stays 1,000: a connection is recycled after that many requests.
    - ``backlog`` = 1,024 (hypercorn: 100): connections the kernel queues before accept, so a
      burst of clients is queued rather than refused; accepting costs a descriptor only then.
    - ``graceful_timeout`` = ``graceful_timeout_seconds``: in-flight requests at a stop.
    - ``accesslog`` None (the request layer logs each request), ``errorlog`` to our logging.
    - ``everos_connection_cap``: our :class:`ConnectionCap`, read by the TCP server (``_tcp.py``);
      hypercorn itself has no connection limit.
    """
    config = hypercorn.config.Config()
    config.bind = [f"{api.host}:{api.port}"]
    config.keep_alive_timeout = api.idle_timeout_seconds
    config.read_timeout = None
    config.backlog = 1024
    config.graceful_timeout = api.graceful_timeout_seconds
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.everos_connection_cap = cap
    return config
