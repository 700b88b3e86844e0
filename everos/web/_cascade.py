"""The cascade's admin routes, mounted under ``/api/v1/cascade`` and ``/api/v2/cascade``.

``GET /status`` answers what ``everos cascade status`` prints; ``POST /fix`` what ``everos cascade
fix`` prints: the dead and failed index rows with their errors and, with ``{"apply": true}``, how
many were queued again (``requeued``). The server's own index workers run those rows; the request
never waits for them (G1), so its answer has no ``outcomes``: watch ``index_status`` of the
documents, or ``GET /status``. ``everos cascade fix --apply`` calls this route when a server owns
the root.
"""

from __future__ import annotations

from quart import Blueprint, Response, request

from everos.api import CascadeFix
from everos.cascade import CascadeService
from everos.web._app import ok
from everos.web._knowledge import json_body

__all__ = ["cascade_blueprints"]


def cascade_blueprints(cascade: CascadeService) -> list[Blueprint]:
    """The routes for ``/api/v1`` and ``/api/v2`` over the server's cascade."""
    return [_blueprint(cascade, version) for version in ("v1", "v2")]


def _blueprint(cascade: CascadeService, version: str) -> Blueprint:
    bp = Blueprint(f"cascade_{version}", __name__, url_prefix=f"/api/{version}/cascade")

    @bp.get("/status")
    async def status() -> Response:
        return ok(await cascade.status())

    @bp.post("/fix")
    async def fix() -> Response:
        apply = await fix_request()
        return ok(await cascade.fix(apply=apply, drain=False))

    return bp


async def fix_request() -> bool:
    """The ``apply`` flag of a ``POST /fix`` body: an empty body, or a JSON object with at most
    ``apply`` (a boolean, default false): :class:`everos.api.CascadeFix`.

    Raises:
        InvalidInput: the body is not a JSON object, has other fields, or ``apply`` is not a boolean.
    """
    if not await request.get_data():
        return False
    return CascadeFix.parse(await json_body()).apply
