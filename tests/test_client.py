"""The CLI's HTTP client: which server, retries after Retry-After, one-line errors (G1, G9)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from everos.client import ApiClient, ApiError, retry_delay, server_base_url
from everos.errors import CommandError, ExitCode
from everos.rootlock import hold_root_lock
from everos.testing.replay import free_port


def test_the_server_is_the_url_given_else_the_one_that_owns_the_root(root: Path) -> None:
    assert server_base_url(root, "http://127.0.0.1:9/") == "http://127.0.0.1:9"
    with pytest.raises(CommandError, match="no everos server owns the root") as caught:
        server_base_url(root, None)
    assert caught.value.exit_code == ExitCode.UNREACHABLE
    with hold_root_lock(root) as lock:
        with pytest.raises(CommandError, match="serves no HTTP"):
            server_base_url(root, None)
        lock.record(["http://0.0.0.0:8031"])
        assert server_base_url(root, None) == "http://127.0.0.1:8031"


def test_retry_after_is_honoured_and_bounded() -> None:
    def answer(retry_after: str | None) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": retry_after} if retry_after else {})

    assert retry_delay(answer("2"), 0) == 2.0
    assert retry_delay(answer("100000"), 0) == 60.0
    assert 0.25 <= retry_delay(answer(None), 0) <= 0.5
    assert 0.25 <= retry_delay(answer("soon"), 0) <= 0.5


async def test_429_and_503_are_retried_after_their_retry_after(autojump_clock) -> None:
    answers = iter([httpx.Response(429, headers={"retry-after": "3"}), httpx.Response(503),
                    httpx.Response(200, json={"request_id": "r", "data": {"ok": True}})])
    seen: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(trio.current_time())
        return next(answers)

    async with ApiClient("http://everos.test", transport=httpx.MockTransport(handle)) as client:
        assert await client.data("GET", "/x") == {"ok": True}
    assert len(seen) == 3 and seen[1] - seen[0] == pytest.approx(3.0)


async def test_an_error_envelope_is_one_line_with_an_exit_code_by_status() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        status = int(request.url.path.strip("/"))
        return httpx.Response(status, json={"request_id": "r", "error": {"code": "NOPE", "message": "not so",
                                                                        "field": "doc_id"}})

    async with ApiClient("http://everos.test", transport=httpx.MockTransport(handle), max_retries=0) as client:
        for status, code in ((404, ExitCode.NOT_FOUND), (422, ExitCode.USAGE), (500, ExitCode.UNREACHABLE),
                             (429, ExitCode.UNREACHABLE)):
            with pytest.raises(ApiError) as caught:
                await client.data("GET", f"/{status}")
            assert caught.value.message == f"{status} NOPE: not so" and caught.value.exit_code == code
            assert caught.value.field == "doc_id"


async def test_a_server_that_does_not_listen_is_unreachable_not_a_traceback() -> None:
    async with ApiClient(f"http://127.0.0.1:{free_port()}", timeout_s=5) as client:
        with trio.fail_after(10), pytest.raises(CommandError, match="cannot reach the everos server") as caught:
            await client.data("GET", "/health")
    assert caught.value.exit_code == ExitCode.UNREACHABLE
