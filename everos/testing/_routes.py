"""Test-only routes for a Quart app, shared by the test suite and the benchmarks."""

from __future__ import annotations

import logging

import trio
from quart import Response
from quart_trio import QuartTrio

from everos.web import ok

__all__ = ["add_log_burst_route"]


def add_log_burst_route(app: QuartTrio, path: str = "/test/log-burst", count: int = 1000) -> None:
    """``GET path`` logs ``count`` exceptions with tracebacks, yielding to the loop every 50, and
    answers ``{"logged": count}``: the flood of errors that froze EverOS 1.1 for seconds each."""

    @app.get(path)
    async def log_burst() -> Response:
        log = logging.getLogger("everos.test")
        for index in range(count):
            try:
                raise ValueError(f"failure {index}")
            except ValueError:
                log.exception("burst")
            if index % 50 == 0:
                await trio.sleep(0)
        return ok({"logged": count})
