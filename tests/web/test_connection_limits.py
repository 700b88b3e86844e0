"""What one client can hold of the server (issue #16 item 3), on the real server over loopback: a
slow request head is cut by the idle timer, a trickled body gets 408 and writes nothing, a
connection over the cap gets 503 at once, and /health answers while 500 idle connections are open."""

from __future__ import annotations

import contextlib
import json
import resource
from pathlib import Path

import httpx
import pytest
import trio

from everos.testing.replay._server import ManagedServer, settings_env

from ..conftest import knowledge_server
from .test_knowledge_routes import files_under

API = "/api/v1/knowledge"


def address(server) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_a_request_head_sent_a_byte_at_a_time_is_cut_at_the_idle_timeout(root: Path) -> None:
    """Slowloris on the headers: hypercorn's idle timer runs until the head is complete."""
    async with knowledge_server(root, api__idle_timeout_seconds=1.0) as server:
        stream = await trio.open_tcp_stream(*address(server))
        head = f"GET {API}/documents HTTP/1.1\r\nHost: x\r\nX-Slow: {'a' * 200}\r\n\r\n".encode()
        started = trio.current_time()
        sent = 0
        with trio.fail_after(10):
            try:
                for byte in head:
                    await stream.send_all(bytes([byte]))
                    sent += 1
                    await trio.sleep(0.1)
                reply = await read_until_closed(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                reply = b""
        assert sent < len(head), "the server waited for the whole slow head"
        assert trio.current_time() - started < 5
        assert not reply.startswith(b"HTTP/1.1 200")
        await stream.aclose()
        assert (await server.client.get("/health")).status_code == 200


async def test_a_body_trickled_a_byte_at_a_time_gets_408_closes_and_writes_nothing(root: Path) -> None:
    """Slowloris on the body: its time is body_timeout_seconds plus a second per body_min_rate_bytes."""
    async with knowledge_server(root, api__body_timeout_seconds=1.0, api__body_min_rate_bytes=500) as server:
        before = files_under(root)
        stream = await trio.open_tcp_stream(*address(server))
        await stream.send_all(f"POST {API}/documents HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-body-1\r\n"
                              "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
                              .encode())
        reply = b""
        with trio.fail_after(10):
            try:
                while b"\r\n\r\n" not in reply:
                    await stream.send_all(b"-")
                    with trio.move_on_after(0.1):
                        reply += await stream.receive_some(65536)
                reply += await read_until_closed(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await stream.aclose()
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), reply[:300]
        assert b"connection: close" in head.lower()
        error = json.loads(body)
        assert error["error"]["code"] == "REQUEST_BODY_TIMEOUT" and error["request_id"] == "slow-body-1"
        assert files_under(root) == before
        # A body that arrives at a normal rate is not affected.
        response = await server.client.post(f"{API}/documents", files={"file": ("a.md", b"# A\n\n" + b"x" * 200_000)},
                                            data={"title": "A"})
        assert response.status_code == 201, response.text


async def test_a_connection_over_the_cap_gets_503_at_once_and_the_count_is_in_health(root: Path) -> None:
    async with knowledge_server(root, api__max_connections=4, api__idle_timeout_seconds=30.0) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as probe:
            health = (await probe.get("/health")).json()
            assert health["http"]["max_connections"] == 4
        # The test client's own pooled connection may still be open: fill the cap up to four.
        held = []
        with trio.fail_after(10):
            while True:
                stream = await trio.open_tcp_stream(*address(server))
                with trio.move_on_after(0.3):
                    reply = await read_until_closed(stream)
                    await stream.aclose()
                    break  # answered and closed: the cap is full
                held.append(stream)
        assert len(held) <= 4
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in head.lower()
        assert json.loads(body)["error"]["code"] == "SERVICE_UNAVAILABLE"
        await held.pop().aclose()
        with trio.fail_after(10):
            while True:  # the freed slot is taken by the next connection
                try:
                    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
                        answer = await client.get("/health")
                    if answer.status_code == 200:
                        health = answer.json()
                        break
                except httpx.TransportError:
                    pass
                await trio.sleep(0.05)
        assert health["http"]["refused_connections"] >= 1 and health["http"]["open_connections"] <= 4
        for stream in held:
            await stream.aclose()


async def test_health_answers_within_a_second_while_500_idle_connections_are_open(root: Path) -> None:
    async with knowledge_server(root, api__idle_timeout_seconds=60.0) as server:
        idle = [await trio.open_tcp_stream(*address(server)) for _ in range(500)]
        try:
            with trio.fail_after(30):
                while (await server.client.get("/health")).json()["http"]["open_connections"] < 500:
                    await trio.sleep(0.05)
            async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as fresh:
                for _ in range(5):
                    with trio.fail_after(1):
                        assert (await fresh.get("/health")).status_code == 200
        finally:
            for stream in idle:
                await stream.aclose()


@pytest.mark.slow
async def test_a_flood_of_connections_under_ulimit_256_leaves_the_servers_own_work_its_descriptors(
        root: Path) -> None:
    """G5b for connections: under ``ulimit -n 256`` the cap (the limit less 128) refuses a flood
    of 400 connections with 503 while a client connected before it uploads, is indexed and
    searches; the server never runs out of descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))  # this side's 400 sockets
    server = ManagedServer(root, settings_env({"api__idle_timeout_seconds": 60}),
                           open_files_limit=256)
    await server.start()
    flood: list[trio.SocketStream] = []
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/health")).json()["http"]["max_connections"] == 128
            for _ in range(400):
                flood.append(await trio.open_tcp_stream("127.0.0.1", server.port))
            with trio.fail_after(30):
                while (health := (await client.get("/health")).json())["http"]["refused_connections"] < 250:
                    await trio.sleep(0.1)
            assert health["http"]["open_connections"] <= 128
            peak = server.resources()["open_files"]
            response = await client.post(f"{API}/documents", files={"file": ("solar.md", b"# Solar\n\nPanels on roofs.\n")},
                                         data={"title": "Solar"})
            assert response.status_code == 201, response.text
            doc_id = response.json()["data"]["doc_id"]
            with trio.fail_after(60):
                while (await client.get(f"{API}/documents/{doc_id}")).json()["data"]["index_status"] != "indexed":
                    await trio.sleep(0.1)
            found = await client.post(f"{API}/search", json={"query": "panels", "method": "keyword"})
            assert [hit["document"]["doc_id"] for hit in found.json()["data"]["hits"]] == [doc_id]
            peak = max(peak, server.resources()["open_files"])
        for stream in flood:
            await stream.aclose()
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as fresh:
            with trio.fail_after(30):
                while True:
                    with contextlib.suppress(httpx.TransportError):
                        if (await fresh.get("/health")).status_code == 200:
                            break
                    await trio.sleep(0.1)
    finally:
        for stream in flood:
            await stream.aclose()
        await server.stop()
    log = (root / "server.log").read_text(errors="replace")
    print(f"\nulimit -n 256: cap 128, 400 connections, peak open files {peak}")
    assert peak < 256
    assert "Too many open files" not in log and "EMFILE" not in log
