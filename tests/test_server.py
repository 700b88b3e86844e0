"""The server in-process on loopback: health independence, errors, deadlines, supervision, the root lock."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import pytest
import trio
from quart import request

from everos.errors import InvalidInput, RootLocked
from everos.supervisor import WorkerCrashLoop
from everos.testing import add_log_burst_route
from everos.web import ok

from .conftest import running_server

HEALTH_BOUND_S = 1.0  # the generous liveness bound of the brief, not a speed claim


def stuck_and_busy_routes(app) -> None:
    @app.get("/test/stuck")
    async def stuck():
        await trio.sleep_forever()

    @app.get("/test/busy")
    async def busy():
        # Keeps the loop busy with many short checkpoints, as ordinary request work does.
        for _ in range(200):
            await trio.sleep(0)
        return ok({"done": True})

    @app.get("/test/invalid")
    async def invalid():
        raise InvalidInput("title must contain a word character", field="title")

    @app.get("/test/crash")
    async def crash():
        raise RuntimeError("boom with a secret local")

    @app.post("/test/echo")
    async def echo():
        return ok({"size": len(await request.get_data())})

    add_log_burst_route(app)


# What each path answered from the status board says when it is whole.
SNAPSHOT_ANSWERS = {"/health": lambda response: response.json()["status"] == "ok",
                    "/metrics": lambda response: "everos_server_state" in response.text}


async def probe_health(client: httpx.AsyncClient, count: int, interval_s: float, path: str = "/health") -> list[float]:
    """Probe ``path`` (/health, or /metrics) ``count`` times; each must answer 200 within the
    liveness bound (G2)."""
    durations = []
    for _ in range(count):
        started = trio.current_time()
        with trio.fail_after(HEALTH_BOUND_S):
            response = await client.get(path)
        assert response.status_code == 200
        assert SNAPSHOT_ANSWERS[path](response)
        durations.append(trio.current_time() - started)
        await trio.sleep(interval_s)
    return durations


async def test_health_body_keeps_everos_status_and_adds_readiness(root: Path) -> None:
    async with running_server(root) as server:
        await trio.sleep(0.3)  # let the lag probe take samples
        body = (await server.client.get("/health")).json()
        assert body["status"] == "ok"
        assert body["state"] == "ready"
        assert body["version"]
        assert body["uptime_s"] >= 0
        assert set(body["loop_lag_ms"]) >= {"p50", "max"}
        assert body["loop_lag_ms"]["samples"] > 0
        assert (await server.client.get("/livez")).json() == {"status": "ok"}
        assert (await server.client.get("/readyz")).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/metrics"])
async def test_health_answers_while_a_route_is_stuck_forever(root: Path, path: str) -> None:
    """G2: /health (and /metrics, answered the same way) is answered by the router even while a
    request hangs in the app."""
    async with running_server(root, configure_app=stuck_and_busy_routes, api__request_timeout_seconds=60) as server:
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(server.client.get, "/test/stuck")
            await trio.sleep(0.2)
            await probe_health(server.client, 10, 0.02, path)
            nursery.cancel_scope.cancel()


async def test_health_answers_while_the_loop_is_busy_with_requests(root: Path) -> None:
    """G2: many concurrent requests in flight do not keep /health waiting."""
    async with running_server(root, configure_app=stuck_and_busy_routes) as server:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30) as load:
            async with trio.open_nursery() as nursery:
                async def hammer() -> None:
                    for _ in range(10):
                        assert (await load.get("/test/busy")).status_code == 200

                for _ in range(32):
                    nursery.start_soon(hammer)
                await probe_health(server.client, 10, 0.02)


async def test_health_answers_through_a_burst_of_1000_logged_exceptions(root: Path) -> None:
    """G5: logging a flood of exceptions never stalls the loop (bounded, locals-free, off-thread)."""
    async with running_server(root, configure_app=stuck_and_busy_routes) as server:
        async with trio.open_nursery() as nursery:
            async def burst() -> None:
                assert (await server.client.get("/test/log-burst")).json()["data"]["logged"] == 1000

            nursery.start_soon(burst)
            await probe_health(server.client, 10, 0.01)


async def test_readyz_answers_503_while_stopping(root: Path) -> None:
    async with running_server(root, configure_app=stuck_and_busy_routes,
                              api__graceful_timeout_seconds=2) as server:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.client.get, "/test/stuck")
            await trio.sleep(0.1)
            server.runtime.request_stop()
            await trio.sleep(0.1)
            assert server.runtime.board.state == "stopping"
            response = server.runtime.board.snapshot()
            assert response["state"] == "stopping"
            nursery.cancel_scope.cancel()


async def test_request_over_its_deadline_answers_504(root: Path) -> None:
    """G1: a request that cannot finish in time gets an answer, 504 REQUEST_TIMEOUT."""
    async with running_server(root, configure_app=stuck_and_busy_routes,
                              api__request_timeout_seconds=0.3) as server:
        response = await server.client.get("/test/stuck")
        assert response.status_code == 504
        body = response.json()
        assert body["error"]["code"] == "REQUEST_TIMEOUT"
        assert body["error"]["path"] == "/test/stuck"
        assert response.headers["x-request-id"] == body["request_id"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no/such/route", 404, "NOT_FOUND"),
        ("DELETE", "/test/busy", 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/test/invalid", 422, "INVALID_INPUT"),
        ("GET", "/test/crash", 500, "INTERNAL_ERROR"),
    ],
)
async def test_error_envelope(root: Path, method: str, path: str, status: int, code: str) -> None:
    async with running_server(root, configure_app=stuck_and_busy_routes) as server:
        response = await server.client.request(method, path)
        assert response.status_code == status
        body = response.json()
        assert set(body) == {"request_id", "error"}
        assert body["error"]["code"] == code
        assert body["error"]["path"] == path
        assert body["error"]["message"]
        assert body["error"]["timestamp"].endswith("+00:00")
        assert len(body["request_id"]) == 32
        assert "secret" not in response.text  # no traceback or locals leak into a 500


async def test_413_answers_with_the_envelope_and_closes_the_connection(root: Path) -> None:
    async with running_server(root, configure_app=stuck_and_busy_routes, knowledge__max_upload_bytes=1) as server:
        response = await server.client.post("/test/echo", content=b"x" * (2 << 20))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert response.headers["connection"] == "close"
        # The client's next request on the pool still gets an answer (stack notes §1).
        with trio.fail_after(HEALTH_BOUND_S):
            assert (await server.client.post("/test/echo", content=b"small")).json()["data"]["size"] == 5


async def test_request_id_is_kept_when_well_formed_and_minted_otherwise(root: Path) -> None:
    async with running_server(root, configure_app=stuck_and_busy_routes) as server:
        kept = await server.client.get("/test/busy", headers={"X-Request-Id": "trace-123.abc"})
        assert kept.headers["x-request-id"] == "trace-123.abc" == kept.json()["request_id"]
        minted = await server.client.get("/test/busy", headers={"X-Request-Id": "bad id\twith spaces"})
        assert minted.headers["x-request-id"] != "bad id\twith spaces"
        assert len(minted.json()["request_id"]) == 32


async def test_second_server_on_the_same_root_is_refused(root: Path) -> None:
    async with running_server(root):
        with pytest.raises(BaseExceptionGroup) as info:
            async with running_server(root):
                pass
        assert info.group_contains(RootLocked, match="owns the root")


class CrashingService:
    """A service whose worker crashes ``crashes`` times, then runs forever."""

    def __init__(self, crashes: float) -> None:
        self.crashes = crashes
        self.runs = 0

    async def open(self, runtime) -> None:
        pass

    def start_workers(self, supervisor) -> None:
        supervisor.start("crashy", self.work)

    async def work(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise RuntimeError(f"crash {self.runs}")
        await trio.sleep_forever()

    async def aclose(self) -> None:
        pass


async def test_crashed_worker_is_restarted_and_counted(root: Path) -> None:
    service = CrashingService(crashes=2)
    async with running_server(root, services=[service]) as server:
        with trio.fail_after(5):
            while service.runs < 3:
                await trio.sleep(0.05)
        worker = (await server.client.get("/health")).json()["workers"]["crashy"]
        assert worker["restarts"] == 2
        assert worker["state"] == "running"
        assert worker["last_error"] == "RuntimeError: crash 2"


async def test_worker_in_a_crash_loop_stops_the_server(root: Path) -> None:
    service = CrashingService(crashes=math.inf)
    with pytest.raises(BaseExceptionGroup) as info:
        with trio.fail_after(10):
            async with running_server(root, services=[service], limits__worker_restart_limit=3):
                await trio.sleep_forever()
    assert info.group_contains(WorkerCrashLoop)
    assert service.runs == 3


async def test_cors_answers_only_the_origins_in_the_allow_list(root: Path) -> None:
    """A browser page on an allowed origin may call the API; any other origin gets no CORS header."""
    allowed, other = "http://localhost:3000", "http://evil.example"
    async with running_server(root, api__cors_origins=[allowed]) as server:
        preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        ok_pre = await server.client.options("/", headers={"Origin": allowed, **preflight})
        assert ok_pre.status_code == 200 and ok_pre.headers["access-control-allow-origin"] == allowed
        assert "POST" in ok_pre.headers["access-control-allow-methods"]
        bad_pre = await server.client.options("/", headers={"Origin": other, **preflight})
        assert "access-control-allow-origin" not in bad_pre.headers
        answer = await server.client.get("/", headers={"Origin": allowed})
        assert answer.headers["access-control-allow-origin"] == allowed
        assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
        assert "access-control-allow-origin" not in (await server.client.get("/", headers={"Origin": other})).headers


async def test_no_cors_headers_without_an_allow_list(root: Path) -> None:
    async with running_server(root) as server:
        answer = await server.client.get("/", headers={"Origin": "http://localhost:3000"})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
