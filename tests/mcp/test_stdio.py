"""``everos mcp``: stdio over a root it opens itself, or a proxy to a running server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio
from mcp import Client, StdioServerParameters

from everos.errors import CommandError, ExitCode
from everos.mcp import TOOL_NAMES, RemoteDispatch
from everos.mcp._stdio import _StdinLines
from everos.mcp_cli import check_reachable, choose_target
from everos.rootlock import hold_root_lock, reachable_url
from everos.server import serve
from everos.testing.replay import free_port

from ..conftest import ingest_services, loaded_config, write_config
from .conftest import call, mcp_server

SPAWN_TIMEOUT_S = 60  # a cold interpreter imports the whole stack before it answers


def everos_mcp(*args: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "everos.cli", "mcp", *args],
                                 env={**os.environ, "EVEROS_LOG_LEVEL": "WARNING"})


@pytest.mark.slow
async def test_stdio_opens_a_free_root_lists_tools_and_adds_a_document(root: Path) -> None:
    with trio.fail_after(SPAWN_TIMEOUT_S):
        async with Client(everos_mcp("--root", str(root))) as client:
            assert sorted(tool.name for tool in (await client.list_tools()).tools) == sorted(TOOL_NAMES)
            body, _, is_error = await call(client, "knowledge_add_document", title="Via stdio",
                                           content="# Stdio\n\nA document sent over stdin.\n")
            assert not is_error and body["done"] is True
            listed, _, _ = await call(client, "knowledge_list_documents")
            assert [d["title"] for d in listed["documents"]] == ["Via stdio"]
    # The client closed stdin: the process stopped and released the root.
    with hold_root_lock(root):
        assert (root / ".index" / "sqlite" / "everos.db").exists()


@pytest.mark.slow
async def test_stdio_proxies_to_a_running_server_given_its_url(root: Path) -> None:
    async with mcp_server(root) as server:
        with trio.fail_after(SPAWN_TIMEOUT_S):
            async with Client(everos_mcp("--url", server.url, "--root", str(root))) as client:
                body, _, is_error = await call(client, "knowledge_add_document", title="Proxied",
                                               content="Forwarded to the running server.")
                assert not is_error
                status, _, _ = await call(client, "knowledge_status")
                assert status["health"]["state"] == "ready"
        doc, _ = await server.knowledge.get_document(body["document"]["doc_id"])
        assert doc.title == "Proxied"


@pytest.mark.slow
def test_sigterm_stops_stdio_while_stdin_stays_open(root: Path) -> None:
    """No hang: the thread blocked reading stdin is abandoned, and the process exits 0."""
    process = subprocess.Popen([sys.executable, "-m", "everos.cli", "mcp", "--root", str(root)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + SPAWN_TIMEOUT_S
        while not (root / ".index" / "sqlite" / "everos.db").exists():
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert b"stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stdout.close()
        process.stderr.close()


async def test_proxy_answers_service_unavailable_when_the_server_is_gone() -> None:
    dispatch = RemoteDispatch(f"http://127.0.0.1:{free_port()}/mcp", deadline_s=10, owner_pid=4242)
    with trio.fail_after(10):
        result = await dispatch("knowledge_status", {})
    assert result.is_error and result.structured_content["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert "pid 4242" in result.content[0].text


def test_a_free_root_is_opened_locally(root: Path) -> None:
    assert choose_target(root, None) == ("local", None, None)
    assert choose_target(root, "http://h:1/mcp") == ("proxy", "http://h:1/mcp", None)


def test_a_locked_root_is_reached_where_its_server_bound_not_at_its_configured_port(tmp_path: Path) -> None:
    write_config(tmp_path, "[api]\nhost = \"0.0.0.0\"\nport = 8123\n")
    with hold_root_lock(tmp_path) as lock:
        lock.record(["http://0.0.0.0:8031"])
        # The lock is held by this process through another descriptor: it reads as owned.
        mode, url, owner = choose_target(tmp_path, None)
    assert (mode, url, owner) == ("proxy", "http://127.0.0.1:8031/mcp", os.getpid())


def test_a_root_owned_by_a_process_without_http_is_refused_not_guessed(root: Path) -> None:
    with hold_root_lock(root, purpose="cascade sync"):
        with pytest.raises(CommandError) as caught:
            choose_target(root, None)
    assert caught.value.exit_code == ExitCode.UNREACHABLE
    assert "cascade sync" in caught.value.message and str(os.getpid()) in caught.value.message


async def test_an_unreachable_owner_is_reported_not_proxied_to() -> None:
    with trio.fail_after(10), pytest.raises(CommandError) as caught:
        await check_reachable(f"http://127.0.0.1:{free_port()}/mcp", owner_pid=4242)
    assert caught.value.exit_code == ExitCode.UNREACHABLE and "pid 4242" in caught.value.message


@pytest.mark.slow
async def test_stdio_without_url_reaches_the_server_that_owns_the_root_on_its_bound_port(root: Path) -> None:
    """Issue: ``everos mcp --root R`` dialled R's configured port (8000: another root's server).
    The server here listens on a free port that no config names; the proxy must find it."""
    async with mcp_server(root) as server:
        with trio.fail_after(SPAWN_TIMEOUT_S):
            async with Client(everos_mcp("--root", str(root))) as client:
                body, _, is_error = await call(client, "knowledge_add_document", title="Through the lock",
                                               content="Sent to the server that owns the root.")
                assert not is_error, body
        doc, _ = await server.knowledge.get_document(body["document"]["doc_id"])
        assert doc.title == "Through the lock"


@pytest.mark.slow
def test_stdio_exits_non_zero_with_one_line_when_the_owner_does_not_answer(root: Path) -> None:
    with hold_root_lock(root) as lock:
        lock.record([f"http://127.0.0.1:{free_port()}"])
        done = subprocess.run([sys.executable, "-m", "everos.cli", "mcp", "--root", str(root)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=SPAWN_TIMEOUT_S,
                              env={**os.environ, "EVEROS_LOG_LEVEL": "WARNING"})
    assert done.returncode == ExitCode.UNREACHABLE, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the everos server" in lines[0], done.stderr


@pytest.mark.slow
def test_stdio_never_creates_a_root_of_its_own(tmp_path: Path) -> None:
    """Issue: an MCP client launches ``everos mcp`` without ``EVEROS_ROOT``; it made an empty
    ``~/.everos`` that ``everos server start`` then refused."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVEROS_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-m", "everos.cli", "mcp"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=SPAWN_TIMEOUT_S, env=env)
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert "everos init" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / ".everos").exists()


def test_a_wildcard_or_ipv6_bind_is_reached_on_loopback() -> None:
    assert reachable_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert reachable_url("http://0.0.0.0:8031") == "http://127.0.0.1:8031"
    assert reachable_url("http://[::]:8000") == "http://[::1]:8000"
    assert reachable_url("http://[::1]:9") == "http://[::1]:9"


async def test_stdin_lines_drop_an_oversized_line_and_keep_the_next() -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b'{"a":1}\n' + b"x" * 100 + b'\n{"b":2}\npartial')
    os.close(write_fd)
    try:
        lines = [line async for line in _StdinLines(read_fd, max_line_bytes=20)]
    finally:
        os.close(read_fd)
    assert lines == ['{"a":1}\n', "\n", '{"b":2}\n', "partial"]


async def test_stdin_lines_drop_a_line_longer_than_one_read() -> None:
    read_fd, write_fd = os.pipe()
    try:
        async with trio.open_nursery() as nursery:
            lines: list[str] = []

            async def read_all() -> None:
                lines.extend([line async for line in _StdinLines(read_fd, max_line_bytes=1000)])

            nursery.start_soon(read_all)
            for _ in range(3):  # a 300 kB line arrives in several reads
                await trio.to_thread.run_sync(os.write, write_fd, b"y" * 100_000)
            await trio.to_thread.run_sync(os.write, write_fd, b'\n{"ok":true}\n')
            os.close(write_fd)
    finally:
        os.close(read_fd)
    assert lines == ["\n", '{"ok":true}\n']


async def test_serve_without_http_runs_the_services_until_stopped(root: Path) -> None:
    """``everos mcp`` opens a root with ``serve(http=False)``: nothing listens, workers run."""
    holder = {}
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(lambda task_status: serve(
            loaded_config(root), services=ingest_services(), http=False,
            runtime_ready=lambda runtime: holder.setdefault("runtime", runtime), task_status=task_status))
        assert binds == [] and holder["runtime"].board.state == "ready"
        assert "ingest-0" in holder["runtime"].board.workers
        holder["runtime"].request_stop()
    assert holder["runtime"].board.state == "stopping"
