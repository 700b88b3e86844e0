"""The raw ASGI layers in front of Quart: the path router, the health app and the request layer.

Order of a request (design, "The nursery tree")::

    PathRouter (counts every request for /metrics)
      /health /livez /readyz -> HealthApp            (snapshot only: no middleware, lock, DB, key)
      every other path       -> BodyDeadline (the body in time, issue #16 item 3, ``_limits.py``), then
                                AuthLayer, when given (API keys and their rates, issue #16), then:
        /metrics             -> MetricsApp           (the same snapshot, and the event counters)
        /openapi.json, /docs -> DocsApp              (the OpenAPI document and Swagger UI, from memory)
        /mcp, /mcp/...       -> the MCP app, if mounted
        everything else      -> RequestLayer -> Quart app

``AuthLayer`` answers 401/403 itself, before any app sees the request (nothing is read or
written for a refused request); an accepted request carries its key in ``scope["everos.key"]``.

``RequestLayer`` gives every request its id, its deadline (guarantee G1: a request that is not
answered in time gets 504 ``REQUEST_TIMEOUT``, never silence) and one structured log line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import trio

from everos.auth import is_upload, required_scope, scope_allows
from everos.errors import EverosError, Forbidden, RateLimited, RequestTimeout, Unauthorized
from everos.logs import carrying_request_id
from everos.metrics import HTTP_LATENCY, HTTP_REQUESTS
from everos.status import StatusBoard
from everos.web._docs import DOCS_STATIC, is_docs_path
from everos.web._envelope import REQUEST_ID_HEADER, dumps, error_body_for, error_headers, pick_request_id

__all__ = ["HEALTH_PATHS", "KEY_SCOPE_KEY", "METRICS_PATH", "ROUTE_SCOPE_KEY", "AuthLayer", "HealthApp", "PathRouter",
           "RequestLayer"]

ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]

HEALTH_PATHS = ("/health", "/livez", "/readyz")
METRICS_PATH = "/metrics"
# The Quart app puts the URL rule that matched here (``create_app``), for the metrics' route label.
ROUTE_SCOPE_KEY = "everos.route"
# The API key an accepted request came with (an ``everos.auth.ApiKey``), set by ``AuthLayer``;
# absent when the server has no keys. The MCP tools read its scope from here.
KEY_SCOPE_KEY = "everos.key"

access_log = logging.getLogger("everos.access")


class HealthApp:
    """Answers ``/health``, ``/livez`` and ``/readyz`` from the status board alone (guarantee G2).

    ``/health`` always answers 200 with the snapshot (EverOS's ``{"status": "ok"}`` plus readiness
    blocks), ``/livez`` 200 while the process runs, ``/readyz`` 200 when ready and 503 while
    starting or stopping. Any method but GET and HEAD gets 405.
    """

    def __init__(self, board: StatusBoard) -> None:
        self.board = board

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope["path"]
        status = 200
        if scope["method"] not in ("GET", "HEAD"):
            status, body = 405, {"error": {"code": "METHOD_NOT_ALLOWED", "message": "use GET", "path": path}}
        elif path == "/livez":
            body = {"status": "ok"}
        elif path == "/readyz":
            ready = self.board.state == "ready"
            status = 200 if ready else 503
            body = {"status": "ok" if ready else self.board.state, "state": self.board.state}
        else:
            body = self.board.snapshot()
        payload = dumps(body)
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                        (b"content-length", str(len(payload)).encode())],
        })
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload})


class _LastBody:
    """Holds back ``http.disconnect`` while the response's last body message is being sent.

    Hypercorn sends the last body message, then, in the same call, tells the app the stream is
    closed (``http.disconnect``) and only after that closes the connection (``Connection: close``,
    HTTP/1.0, a request body left unread by an early 413/4xx) or readies it for the next request.
    Quart-Trio cancels its handler as soon as it receives that disconnect, which cancels the send
    still in flight at exactly that point: the connection is then neither closed nor reusable, and
    the client's next request on it stalls until the keep-alive timeout. Delivering the disconnect
    only once the last send has returned lets hypercorn finish; a disconnect at any other time (the
    client went away mid-request) is delivered at once.
    """

    def __init__(self) -> None:
        self._started = False
        self._done = trio.Event()

    @contextlib.asynccontextmanager
    async def sending(self, message: dict) -> AsyncIterator[None]:
        last = message["type"] == "http.response.body" and not message.get("more_body", False)
        if last:
            self._started = True
        try:
            yield
        finally:
            if last:
                self._done.set()

    def receiving(self, receive: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
        async def receive_after_last_body() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect" and self._started:
                await self._done.wait()  # set when hypercorn's send returns (or is cancelled)
            return message
        return receive_after_last_body


class PathRouter:
    """Dispatches by path prefix before any middleware; lifespan goes to the default app.

    Every HTTP request is counted here, once, in :mod:`everos.metrics`: by method, route template
    (the health and metrics paths, a mount's prefix, the Quart rule that matched, else
    ``unmatched``) and status, with its latency.
    """

    def __init__(self, default: ASGIApp, health: ASGIApp, mounts: dict[str, ASGIApp] | None = None,
                 metrics: ASGIApp | None = None, docs: ASGIApp | None = None,
                 auth: AuthLayer | None = None, body_deadline: Any = None) -> None:
        self.default = default
        self.auth = auth
        self.body_deadline = body_deadline  # a _limits.BodyDeadline: every path but the health ones
        self.health = health
        self.metrics = metrics
        self.docs = docs
        self.mounts = dict(mounts or {})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            mounted = self._mount(scope["path"]) if scope["type"] == "websocket" else None
            app = mounted[0] if mounted else self.default
            if self.auth is not None and scope["type"] == "websocket":
                app = functools.partial(self.auth, app)
            return await app(scope, receive, send)
        app, route = self._route(scope["path"])
        if self.auth is not None and app is not self.health:
            app = functools.partial(self.auth, app)
        if self.body_deadline is not None and app is not self.health:
            app = functools.partial(self.body_deadline, app)
        status = {"code": "cut"}
        last_body = _LastBody()

        async def counting_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = str(message["status"])
            async with last_body.sending(message):
                await send(message)

        started = time.perf_counter()
        try:
            await app(scope, last_body.receiving(receive), counting_send)
        finally:
            route = route or scope.get(ROUTE_SCOPE_KEY) or "unmatched"
            HTTP_REQUESTS.labels(scope["method"], route, status["code"]).inc()
            HTTP_LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)

    def _route(self, path: str) -> tuple[ASGIApp, str | None]:
        """The app for ``path`` and its route label (None: the Quart app names it)."""
        if path in HEALTH_PATHS:
            return self.health, path
        if path == METRICS_PATH and self.metrics is not None:
            return self.metrics, path
        if self.docs is not None and is_docs_path(path):
            return self.docs, DOCS_STATIC.rstrip("/") if path.startswith(DOCS_STATIC) else path
        return self._mount(path) or (self.default, None)

    def _mount(self, path: str) -> tuple[ASGIApp, str] | None:
        """The mounted app whose prefix ``path`` is, or lies under, with that prefix."""
        for prefix, app in self.mounts.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app, prefix
        return None


class AuthLayer:
    """API keys in front of every app but the health app (issue #16 item 1).

    With no key on the root (``keys.required`` false) every request passes as before. Otherwise a
    request needs ``Authorization: Bearer <key>``: none, or a key the ring does not know, gets 401
    ``UNAUTHORIZED`` with ``WWW-Authenticate: Bearer``; a key whose scope is below
    :func:`everos.auth.required_scope` gets 403 ``FORBIDDEN``. Both are answered here, before the
    app runs, so a refused request reads no body and writes nothing. A CORS preflight (``OPTIONS``
    with ``Access-Control-Request-Method``: browsers send it without credentials) passes; it is
    answered by the CORS layer and changes nothing.

    The key is never logged: a refusal logs one access line with the reason, an accepted request
    carries only the key's record (id, name, scope) in ``scope["everos.key"]``.

    An accepted key is then held to its rate (``limiter``, an ``everos.key_limits.RateLimiter``):
    over its requests per second, or with its uploads in flight already, the request gets 429
    ``RATE_LIMITED`` with ``Retry-After``, also before the app runs. ``usage`` notes when each key
    was last used.
    """

    def __init__(self, keys: Any, limiter: Any = None, usage: Any = None) -> None:
        self.keys = keys  # an everos.auth.KeyRing
        self.limiter = limiter
        self.usage = usage

    async def __call__(self, app: ASGIApp, scope: dict, receive: Any, send: Any) -> None:
        if not self.keys.required:
            return await app(scope, receive, send)
        headers = scope.get("headers", ())
        if scope["type"] == "http" and scope["method"] == "OPTIONS" and any(
                k.lower() == b"access-control-request-method" for k, _ in headers):
            return await app(scope, receive, send)
        authorization = next((v for k, v in headers if k.lower() == b"authorization"), None)
        needed = required_scope(scope.get("method", "GET"), scope["path"])
        refusal: EverosError | None = None
        challenge = 'Bearer realm="everos"'
        key = None
        if authorization is None:
            refusal = Unauthorized("this server needs an API key: send `Authorization: Bearer <key>` "
                                   "(`everos keys create` makes one)")
        else:
            kind, _, token = authorization.decode("latin-1").strip().partition(" ")
            key = self.keys.lookup(token.strip()) if kind.lower() == "bearer" and token.strip() else None
            if key is None:
                refusal = Unauthorized("the API key is not valid on this server (unknown or revoked); "
                                       "send `Authorization: Bearer <key>`")
                challenge = 'Bearer realm="everos", error="invalid_token"'
            elif not scope_allows(key.scope, needed):
                refusal = Forbidden(f"this API key has the {key.scope} scope; {scope.get('method', '')} "
                                    f"{scope['path']} needs {needed}")
                challenge = f'Bearer realm="everos", error="insufficient_scope", scope="{needed}"'
        if refusal is None:
            scope[KEY_SCOPE_KEY] = key
            return await self._within_rate(app, key, scope, receive, send)
        await self._refuse(scope, receive, send, refusal, challenge, key)

    async def _within_rate(self, app: ASGIApp, key: Any, scope: dict, receive: Any, send: Any) -> None:
        if self.usage is not None:
            self.usage.note(key)
        if self.limiter is None:
            return await app(scope, receive, send)
        wait_s = self.limiter.admit(key)
        if wait_s > 0:
            return await self._refuse(scope, receive, send, RateLimited(
                f"this API key sends more than its {self.limiter.default.for_key(key).requests_per_second:g} "
                "requests a second", retry_after_s=wait_s), None, key)
        if scope["type"] != "http" or not is_upload(scope["method"], scope["path"]):
            return await app(scope, receive, send)
        if not self.limiter.start_upload(key):
            return await self._refuse(scope, receive, send, RateLimited(
                f"this API key has its {self.limiter.default.for_key(key).concurrent_uploads} uploads in flight "
                "already; send the next when one has finished", retry_after_s=1.0), None, key)
        try:
            await app(scope, receive, send)
        finally:
            self.limiter.end_upload(key)

    @staticmethod
    async def _refuse(scope: dict, receive: Any, send: Any, exc: EverosError, challenge: str | None,
                      key: Any) -> None:
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        incoming = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                         if k.lower() == REQUEST_ID_HEADER.encode()), None)
        request_id = pick_request_id(incoming)
        body = dumps(error_body_for(request_id, exc, scope["path"]))
        # A body left unread (an upload refused before it was read) leaves the connection unusable
        # for the next request: close it, as the 413 does.
        close = scope["method"] not in ("GET", "HEAD")
        headers = [*error_headers(request_id, exc, close=close), (b"content-length", str(len(body)).encode()),
                   *([(b"www-authenticate", challenge.encode())] if challenge else [])]
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        access_log.info("request", extra={"fields": {
            "request_id": request_id, "method": scope["method"], "path": scope["path"], "status": exc.status,
            "refused": exc.code, **({"key_id": key.id} if key is not None else {})}})


class RequestLayer:
    """Request id, deadline and access log for every request it wraps.

    The id is a well-formed incoming ``X-Request-Id`` or a minted one; it is stored in
    ``scope["everos.request_id"]`` for the app, made current for the code that serves it (its log
    lines and the jobs it queues carry it: ``logs.carrying_request_id``) and returned in the
    response header. The app runs in
    a cancel scope with ``deadline_s``; if the deadline passes before the response has started, the
    whole handler subtree is cancelled and the client gets 504 ``REQUEST_TIMEOUT`` with the
    connection closed. If the response had already started, the connection is cut.
    """

    def __init__(self, app: ASGIApp, deadline_s: float | Callable[[dict], float]) -> None:
        self.app = app
        self.deadline_s = deadline_s

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = next((v.decode("latin-1") for k, v in scope.get("headers", ())
                         if k.lower() == REQUEST_ID_HEADER.encode()), None)
        request_id = pick_request_id(incoming)
        scope["everos.request_id"] = request_id
        started_at = time.perf_counter()
        response: dict[str, Any] = {"status": None}

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != REQUEST_ID_HEADER.encode()]
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        deadline_s = self.deadline_s(scope) if callable(self.deadline_s) else self.deadline_s
        with trio.move_on_after(deadline_s) as cancel_scope, carrying_request_id(request_id):
            await self.app(scope, receive, send_with_id)
        if cancel_scope.cancelled_caught and response["status"] is None:
            exc = RequestTimeout(f"the request did not finish within its deadline of {deadline_s:g} s")
            body = dumps(error_body_for(request_id, exc, scope["path"]))
            response["status"] = exc.status
            await send({"type": "http.response.start", "status": exc.status,
                        "headers": error_headers(request_id, exc, close=True)})
            await send({"type": "http.response.body", "body": body})
        access_log.info(
            "request",
            extra={"fields": {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": response["status"] if response["status"] is not None else "cut",
                "duration_ms": round((time.perf_counter() - started_at) * 1000, 1),
                **({"key_id": scope[KEY_SCOPE_KEY].id} if scope.get(KEY_SCOPE_KEY) is not None else {}),
            }},
        )
