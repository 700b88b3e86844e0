"""The Quart-Trio application: routes, success envelope and the error envelope for every error.

Everything not handled by the raw ASGI layers (health, MCP) arrives here already carrying its
request id (``scope["everos.request_id"]``) and inside its deadline (see ``_asgi.RequestLayer``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from quart import Blueprint, Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from everos import __version__
from everos.errors import EverosError, PayloadTooLarge
from everos.web._asgi import ROUTE_SCOPE_KEY
from everos.web._envelope import CODE_BY_STATUS, dumps, error_body, error_body_for, mint_request_id

__all__ = ["create_app", "current_request_id", "ok"]

log = logging.getLogger("everos.web")

# Multipart framing around an upload: boundaries, part headers and the small form fields.
MULTIPART_OVERHEAD_BYTES = 1 << 20


def current_request_id() -> str:
    return request.scope.get("everos.request_id") or mint_request_id()


def _json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    response = Response(dumps(body), status=status, content_type="application/json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The EverOS success envelope ``{"request_id", "data"}``."""
    return _json_response({"request_id": current_request_id(), "data": data}, status, headers)


def _render_everos_error(exc: EverosError) -> Response:
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, PayloadTooLarge):
        # A 413 sent before the body was read leaves the keep-alive connection unusable for the
        # client's next request (stack notes §1): close it.
        headers["Connection"] = "close"
    if exc.status >= 500:
        log.error("request failed: %s %s", exc.code, exc.message)
    return _json_response(error_body_for(current_request_id(), exc, request.path), exc.status, headers)


def _render_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status == 413:
        return _render_everos_error(PayloadTooLarge("the request body is larger than the server accepts"))
    code = CODE_BY_STATUS.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    message = exc.description or exc.name
    if status >= 500:
        message = "Internal server error"
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
    return _json_response(error_body(current_request_id(), code=code, message=message, path=request.path),
                          status, headers)


def _render_unexpected(exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return _json_response(
        error_body(current_request_id(), code="INTERNAL_ERROR", message="Internal server error", path=request.path),
        500,
    )


def create_app(
    *,
    max_upload_bytes: int,
    blueprints: Iterable[Blueprint] = (),
    configure: Callable[[QuartTrio], None] | None = None,
) -> QuartTrio:
    """Build the Quart-Trio app. Long-lived workers never go in ``app.nursery`` (stack notes §3)."""
    app = QuartTrio("everos")
    app.config["MAX_CONTENT_LENGTH"] = max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    # Deadlines are ours (RequestLayer); Quart's 60 s defaults would only muddle them.
    app.config["BODY_TIMEOUT"] = None
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True

    app.register_error_handler(EverosError, _render_everos_error)
    app.register_error_handler(HTTPException, _render_http_exception)
    app.register_error_handler(Exception, _render_unexpected)

    @app.before_request
    async def name_the_route() -> None:
        if request.url_rule is not None:  # the template, for bounded metric labels
            request.scope[ROUTE_SCOPE_KEY] = request.url_rule.rule

    @app.get("/")
    async def index() -> Response:
        return ok({"name": "everos", "version": __version__, "health": "/health",
                   "api": ["/api/v1/knowledge", "/api/v2/knowledge"]})

    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    if configure is not None:
        configure(app)
    return app
