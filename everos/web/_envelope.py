"""The EverOS envelopes, rendered in one place.

Success: ``{"request_id", "data"}``. Error: ``{"request_id", "error": {"code", "message",
"timestamp", "path"}}`` (EverOS 1.x, reference §2.2). Both the Quart error handlers and the raw
ASGI layers (deadline, router) build their bodies here.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from typing import Any

from everos.errors import EverosError

__all__ = [
    "REQUEST_ID_HEADER",
    "error_body",
    "mint_request_id",
    "now_iso",
    "pick_request_id",
]

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

# Codes by status for errors that did not come from an EverosError (Quart's own HTTPExceptions).
CODE_BY_STATUS = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_FORMAT",
    422: "INVALID_INPUT",
    429: "QUEUE_SATURATED",
    503: "SERVICE_UNAVAILABLE",
    504: "REQUEST_TIMEOUT",
}


def mint_request_id() -> str:
    """32 lowercase hex characters, EverOS's (W3C trace-id) format."""
    return uuid.uuid4().hex


def pick_request_id(incoming: str | None) -> str:
    """Keep a well-formed incoming ``X-Request-Id``; mint one otherwise."""
    if incoming and _REQUEST_ID_RE.match(incoming):
        return incoming
    return mint_request_id()


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def error_body(request_id: str, *, code: str, message: str, path: str, **extra: Any) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "timestamp": now_iso(), "path": path}
    error.update({k: v for k, v in extra.items() if v is not None})
    return {"request_id": request_id, "error": error}


def error_body_for(request_id: str, exc: EverosError, path: str) -> dict[str, Any]:
    return error_body(request_id, code=exc.code, message=exc.message, path=path, field=getattr(exc, "field", None))


def error_headers(request_id: str, exc: EverosError | None = None, *, close: bool = False) -> list[tuple[bytes, bytes]]:
    headers = [(b"content-type", b"application/json"), (REQUEST_ID_HEADER.encode(), request_id.encode())]
    if exc is not None and exc.retry_after_s is not None:
        # Whole seconds, rounded up: a client that waits that long finds room.
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()))
    if close:
        headers.append((b"connection", b"close"))
    return headers


def dumps(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
