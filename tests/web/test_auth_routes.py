"""API keys on the real server over loopback (issue #16 item 1): 401/403 with the EverOS envelope,
scopes per route, /health open, revocation seen without a restart, nothing written when refused."""

from __future__ import annotations

from pathlib import Path

import trio

from everos.auth import create_key, revoke_key

from ..conftest import knowledge_server
from .test_knowledge_routes import files_under

API = "/api/v1/knowledge"
UPLOAD = {"file": ("notes.md", b"# Notes\n\nSome text about nurseries.\n", "text/markdown")}


async def upload(client, headers: dict[str, str] | None = None):
    return await client.post(f"{API}/documents", files=UPLOAD, data={"title": "Notes"}, headers=headers or {})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code and body["request_id"] and body["error"]["path"]
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_without_keys_everything_is_open_as_before(root: Path) -> None:
    """issue #16 item 1: a root with no key needs no Authorization header anywhere."""
    async with knowledge_server(root) as server:
        client = server.client
        assert (await upload(client)).status_code in (200, 201, 202)
        assert (await client.get(f"{API}/documents")).status_code == 200
        assert (await client.get("/api/v1/cascade/status")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


async def test_keys_gate_every_route_by_scope(root: Path) -> None:
    """issue #16 item 1: 401 without/with a wrong key, 403 for a read key uploading, write uploads
    but cannot run cascade fix, admin can; /health, /livez, /readyz stay open."""
    read, _ = create_key(root, "read")
    write, _ = create_key(root, "write")
    admin, _ = create_key(root, "admin")
    async with knowledge_server(root) as server:
        client = server.client
        for path in ("/health", "/livez", "/readyz"):
            assert (await client.get(path)).status_code == 200
        missing = await client.get(f"{API}/documents")
        assert_refused(missing, 401, "UNAUTHORIZED")
        assert missing.headers["www-authenticate"] == 'Bearer realm="everos"'
        wrong = await client.get(f"{API}/documents", headers=bearer(read + "x"))
        assert_refused(wrong, 401, "UNAUTHORIZED")
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        assert_refused(await client.get(f"{API}/documents", headers={"Authorization": read}), 401, "UNAUTHORIZED")
        for path in ("/metrics", "/openapi.json", "/"):
            assert_refused(await client.get(path), 401, "UNAUTHORIZED")
            assert (await client.get(path, headers=bearer(read))).status_code == 200

        assert (await client.get(f"{API}/documents", headers=bearer(read))).status_code == 200
        before = files_under(root)
        searched = await client.post(f"{API}/search", json={"query": "nurseries"}, headers=bearer(read))
        assert searched.status_code == 200, searched.text
        forbidden = await upload(client, bearer(read))
        assert_refused(forbidden, 403, "FORBIDDEN")
        assert 'error="insufficient_scope", scope="write"' in forbidden.headers["www-authenticate"]
        assert_refused(await upload(client), 401, "UNAUTHORIZED")
        listed = (await client.get(f"{API}/documents", headers=bearer(admin))).json()["data"]
        assert listed["total"] == 0  # nothing was written for the refused uploads
        assert files_under(root) == before

        uploaded = await upload(client, bearer(write))
        assert uploaded.status_code in (201, 202), uploaded.text
        assert_refused(await client.post("/api/v1/cascade/fix", json={}, headers=bearer(write)), 403, "FORBIDDEN")
        assert_refused(await client.get("/api/v2/cascade/status", headers=bearer(write)), 403, "FORBIDDEN")
        assert_refused(await client.post(f"{API}/tasks/nope/retry", json={}, headers=bearer(write)), 403,
                       "FORBIDDEN")
        fixed = await client.post("/api/v1/cascade/fix", json={}, headers=bearer(admin))
        assert fixed.status_code == 200, fixed.text
        listed = (await client.get(f"{API}/documents", headers=bearer(admin))).json()["data"]
        assert listed["total"] == 1


async def test_a_key_revoked_with_the_cli_stops_working_on_the_running_server(root: Path) -> None:
    """issue #16 item 1: revocation (and creation) reach a running server within 5 s, no restart."""
    _, admin = create_key(root, "admin")
    async with knowledge_server(root) as server:
        key, record = create_key(root, "read")
        with trio.fail_after(5):
            while (await server.client.get(f"{API}/documents", headers=bearer(key))).status_code != 200:
                await trio.sleep(0.1)
        revoke_key(root, record.id)
        with trio.fail_after(5):
            while (answer := await server.client.get(f"{API}/documents", headers=bearer(key))).status_code != 401:
                assert answer.status_code == 200
                await trio.sleep(0.1)
        assert_refused(answer, 401, "UNAUTHORIZED")
        revoke_key(root, admin.id)  # the last key gone: open again, as with no keys at all
        with trio.fail_after(5):
            while (await server.client.get(f"{API}/documents")).status_code != 200:
                await trio.sleep(0.1)


async def test_the_key_is_never_logged(root: Path, caplog) -> None:
    """issue #16 item 1: neither an accepted nor a refused key appears in any log record."""
    key, record = create_key(root, "read")
    caplog.set_level("DEBUG")
    async with knowledge_server(root) as server:
        assert (await server.client.get(f"{API}/documents", headers=bearer(key))).status_code == 200
        assert (await upload(server.client, bearer(key))).status_code == 403
        assert (await server.client.get(f"{API}/documents", headers=bearer(key + "y"))).status_code == 401
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert key not in logged and key[4:] not in logged
    assert record.id in logged  # the access line names the key by its id


async def test_a_cors_preflight_passes_without_a_key_and_changes_nothing(root: Path) -> None:
    """issue #16 item 1: browsers send the preflight without credentials; it passes, the request itself needs the key."""
    key, _ = create_key(root, "write")
    origin = "http://app.example"
    async with knowledge_server(root, api__cors_origins=[origin]) as server:
        preflight = await server.client.options(f"{API}/documents", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        assert_refused(await server.client.options(f"{API}/documents"), 401, "UNAUTHORIZED")
        assert_refused(await server.client.get("/docs"), 401, "UNAUTHORIZED")
        assert (await server.client.get("/docs", headers=bearer(key))).status_code == 200


async def test_a_key_over_its_rate_gets_429_with_retry_after_and_nothing_is_written(root: Path) -> None:
    """issue #16 item 2: each key has its own bucket; the refusal comes before the app reads anything."""
    slow, _ = create_key(root, "write", requests_per_second=0.5, burst=2)
    other, _ = create_key(root, "write")
    async with knowledge_server(root) as server:
        client = server.client
        for _ in range(2):
            assert (await client.get(f"{API}/documents", headers=bearer(slow))).status_code == 200
        before = files_under(root)
        refused = await upload(client, bearer(slow))
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "RATE_LIMITED" and "www-authenticate" not in refused.headers
        assert 1 <= int(refused.headers["retry-after"]) <= 2
        assert files_under(root) == before
        assert (await client.get(f"{API}/documents", headers=bearer(other))).status_code == 200  # its own bucket
        assert (await client.get("/health")).status_code == 200  # no key, no rate


async def test_a_key_with_its_uploads_in_flight_gets_429_until_one_finishes(root: Path) -> None:
    """issue #16 item 2: concurrent_uploads counts the uploads whose request is still running. The
    slow upload is sent by hand, its body held back, so the test can see it refused (if a probe
    held the slot when it arrived) and send it again."""
    key, _ = create_key(root, "write", concurrent_uploads=1)
    boundary = "everosboundary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nSlow\r\n--{boundary}\r\n"
            "Content-Disposition: form-data; name=\"file\"; filename=\"slow.md\"\r\n"
            "Content-Type: text/markdown\r\n\r\n# Slow\n\nA body sent in two parts.\n").encode()
    end = f"\r\n--{boundary}--\r\n".encode()

    async with knowledge_server(root) as server:
        host, port = server.base_url.removeprefix("http://").split(":")

        async def start_slow_upload() -> trio.SocketStream:
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(
                f"POST {API}/documents HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(part) + len(end)}\r\n\r\n".encode() + part)
            return stream

        async def refused(stream: trio.SocketStream) -> bool:
            with trio.move_on_after(0.2):
                return (await stream.receive_some(65536)).startswith(b"HTTP/1.1 429")
            return False  # no answer yet: it waits for the rest of its body

        slow = await start_slow_upload()
        with trio.fail_after(20):
            while True:
                if await refused(slow):  # a probe held the slot when it arrived
                    await slow.aclose()
                    slow = await start_slow_upload()
                    continue
                probe = await upload(server.client, bearer(key))
                if probe.status_code == 429:
                    break
        assert probe.json()["error"]["code"] == "RATE_LIMITED" and probe.headers["retry-after"] == "1"
        await slow.send_all(end)
        with trio.fail_after(10):
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += await slow.receive_some(65536)
        await slow.aclose()
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        assert (await upload(server.client, bearer(key))).status_code in (200, 201)  # the slot is free again


async def test_keys_list_shows_when_a_server_last_saw_each_key(root: Path) -> None:
    """issue #16 item 1: last use, written by the server when it stops (and every 30 s)."""
    used, used_record = create_key(root, "read")
    _, idle_record = create_key(root, "read")
    async with knowledge_server(root) as server:
        assert (await server.client.get(f"{API}/documents", headers=bearer(used))).status_code == 200
    from everos.key_limits import last_used

    seen = last_used(root)
    assert set(seen) == {used_record.id} and idle_record.id not in seen
    assert seen[used_record.id].startswith("20")
