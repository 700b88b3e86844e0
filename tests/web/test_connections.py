"""A client always gets its answer, then a closed or a reusable connection (issue #16, bug 4).

Raw HTTP/1.x over loopback against the real server, because an HTTP client library hides exactly
what is tested here: whether the server closes the connection when it must (``Connection: close``,
HTTP/1.0, an answer sent before the request body was read) or reads the next request when it may.
A stalled connection would wait for the 30 s keep-alive timeout; every exchange here has a 5 s
liveness bound instead, and no assertion on speed.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio

from ..conftest import knowledge_server

LIVENESS_S = 5.0
DOCUMENTS = "/api/v1/knowledge/documents"


async def _connect(base_url: str) -> trio.SocketStream:
    url = urlsplit(base_url)
    return await trio.open_tcp_stream(url.hostname, url.port)


def _request(method: str, path: str, host: str, *, version: str = "1.1", headers: str = "",
             body: bytes = b"", content_length: int | None = None) -> bytes:
    length = len(body) if content_length is None else content_length
    head = f"{method} {path} HTTP/{version}\r\nHost: {host}\r\n{headers}"
    if body or content_length is not None:
        head += f"Content-Length: {length}\r\n"
    return (head + "\r\n").encode() + body


async def _read_response(stream: trio.SocketStream, buffered: bytearray) -> tuple[int, bytes] | None:
    """One whole response (status, body) by its Content-Length; None on end of stream first."""
    while b"\r\n\r\n" not in buffered:
        chunk = await stream.receive_some(65536)
        if not chunk:
            return None
        buffered += chunk
    head, _, rest = bytes(buffered).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(rest) < length:
        chunk = await stream.receive_some(65536)
        assert chunk, "the connection closed inside the response body"
        rest += chunk
    del buffered[:]
    buffered += rest[length:]
    return int(lines[0].split()[1]), rest[:length]


async def _answer_then_close(base_url: str, raw: bytes) -> int:
    """Send ``raw``; the server answers and then closes the connection, within the bound."""
    stream = await _connect(base_url)
    async with stream:
        await stream.send_all(raw)
        buffered = bytearray()
        with trio.fail_after(LIVENESS_S):
            answer = await _read_response(stream, buffered)
            assert answer is not None, "no answer before the connection closed"
            while await stream.receive_some(65536):
                pass  # anything after the answer (there is none) until the server closes
        return answer[0]


async def test_connection_close_is_honoured_on_the_api_routes(root: Path) -> None:
    """G1, #16 bug 4: ``Connection: close`` on a Quart route: the answer, then a closed connection."""
    async with knowledge_server(root) as server:
        host = urlsplit(server.base_url).netloc
        status = await _answer_then_close(server.base_url, _request("GET", DOCUMENTS, host,
                                                                    headers="Connection: close\r\n"))
        assert status == 200
        status = await _answer_then_close(server.base_url, _request("GET", "/no/such/route", host,
                                                                    headers="Connection: close\r\n"))
        assert status == 404


async def test_http_1_0_is_answered_and_closed(root: Path) -> None:
    """G1, #16 bug 4: an HTTP/1.0 request (no keep-alive asked) on the routes, /health and /mcp."""
    async with knowledge_server(root) as server:
        host = urlsplit(server.base_url).netloc
        assert await _answer_then_close(server.base_url, _request("GET", DOCUMENTS, host, version="1.0")) == 200
        assert await _answer_then_close(server.base_url, _request("GET", "/health", host, version="1.0")) == 200
        initialize = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        mcp_headers = "Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n"
        for version, headers in (("1.0", mcp_headers), ("1.1", mcp_headers + "Connection: close\r\n")):
            stream = await _connect(server.base_url)
            async with stream:
                await stream.send_all(_request("POST", "/mcp", host, version=version, headers=headers,
                                               body=initialize.encode()))
                received = b""
                with trio.fail_after(LIVENESS_S):
                    while chunk := await stream.receive_some(65536):
                        received += chunk
            assert received.startswith(b"HTTP/1.1 200 "), received[:200]
            assert b'"serverInfo"' in received


async def test_an_early_413_closes_instead_of_stalling(root: Path) -> None:
    """G1, #16 bug 4: the server refuses an upload by its announced size before reading the body;
    the client gets the 413 and then a closed connection, not a connection that reads nothing."""
    async with knowledge_server(root) as server:
        host = urlsplit(server.base_url).netloc
        raw = _request("POST", DOCUMENTS, host, headers="Content-Type: multipart/form-data; boundary=b\r\n",
                       body=b"--b\r\n", content_length=900_000_000)
        assert await _answer_then_close(server.base_url, raw) == 413


async def test_an_early_answer_leaves_the_connection_closed_or_reusable(root: Path) -> None:
    """G1, #16 bug 4: a 422 sent before the route read the body it was sent; the next request on the
    same connection is answered, or the connection is closed: never silence."""
    async with knowledge_server(root) as server:
        host = urlsplit(server.base_url).netloc
        stream = await _connect(server.base_url)
        async with stream:
            body = json.dumps({"title": "x" * 2000}).encode()
            await stream.send_all(_request("PATCH", f"{DOCUMENTS}/not-an-id", host, body=body))
            buffered = bytearray()
            with trio.fail_after(LIVENESS_S):
                first = await _read_response(stream, buffered)
            assert first is not None and first[0] == 422
            try:
                await stream.send_all(_request("GET", DOCUMENTS, host))
            except trio.BrokenResourceError:
                return  # closed: the client opens a new connection
            with trio.fail_after(LIVENESS_S):
                second = await _read_response(stream, buffered)
            assert second is None or second[0] == 200


async def test_keep_alive_still_serves_the_next_request(root: Path) -> None:
    """The fix keeps keep-alive: three requests on one HTTP/1.1 connection, three answers."""
    async with knowledge_server(root) as server:
        host = urlsplit(server.base_url).netloc
        stream = await _connect(server.base_url)
        async with stream:
            buffered = bytearray()
            for path in (DOCUMENTS, "/health", DOCUMENTS):
                await stream.send_all(_request("GET", path, host))
                with trio.fail_after(LIVENESS_S):
                    answer = await _read_response(stream, buffered)
                assert answer is not None and answer[0] == 200


async def test_a_connection_its_client_closed_is_released_at_once(root: Path) -> None:
    """G5 (bounded resources): after its answers, the client ends its side of a keep-alive
    connection; the server closes its side within the liveness bound (1 s), not when the 5 s
    keep-alive timer runs out. Hypercorn's trio worker held an idle one for the whole timer, so a
    burst of short-lived clients piled up descriptors in CLOSE-WAIT (the replay's burst rounds)."""
    async with knowledge_server(root) as server:
        host = urlsplit(server.base_url).netloc
        for paths in (["/health"], [DOCUMENTS, DOCUMENTS]):  # the raw health app and Quart
            stream = await _connect(server.base_url)
            async with stream:
                buffered = bytearray()
                for path in paths:
                    await stream.send_all(_request("GET", path, host))
                    with trio.fail_after(LIVENESS_S):
                        answer = await _read_response(stream, buffered)
                    assert answer is not None and answer[0] == 200
                # Time for the server to ready the connection for its next request (the case that
                # was held: an end of stream before that closed at once already).
                await trio.sleep(0.3)
                await stream.send_eof()
                with trio.fail_after(1.0):
                    assert await stream.receive_some(65536) == b""  # the server's end of stream


def test_prompt_close_is_installed_once_and_refuses_a_changed_hypercorn(monkeypatch) -> None:
    """The connection class is swapped only where hypercorn 0.18 keeps it; a hypercorn that moved
    or replaced it fails loudly at start instead of silently losing the fix."""
    import hypercorn.trio.run

    from everos.web import use_prompt_close
    from everos.web._tcp import PromptCloseTCPServer

    monkeypatch.setattr(hypercorn.trio.run, "TCPServer", hypercorn.trio.run.TCPServer)
    use_prompt_close()
    use_prompt_close()
    assert hypercorn.trio.run.TCPServer is PromptCloseTCPServer
    monkeypatch.setattr(hypercorn.trio.run, "TCPServer", object)
    with pytest.raises(RuntimeError, match="TCPServer"):
        use_prompt_close()
