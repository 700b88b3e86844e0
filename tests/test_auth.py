"""API keys (issue #16 item 1): the key file, the ``everos keys`` commands, the scope table and
the refusal to serve beyond loopback without a key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from everos.auth import (
    KEY_FILENAME,
    KeyRing,
    check_bind_auth,
    create_key,
    hash_key,
    list_keys,
    required_scope,
    revoke_key,
)
from everos.cli import main
from everos.errors import ConfigError, ExitCode
from everos.server import serve

from .conftest import loaded_config


def test_keys_create_prints_the_key_once_and_stores_only_its_hash(root: Path, capsys) -> None:
    """issue #16 item 1: `everos keys create` prints the key once; the 0600 file has its sha256, not the key."""
    assert main(["keys", "create", "--scope", "write", "--name", "ci", "--root", str(root)]) == ExitCode.OK
    key = capsys.readouterr().out.strip()
    assert key.startswith("evk_") and len(key) == 4 + 32
    path = root / KEY_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert key not in text and key[4:] not in text and hash_key(key) in text
    (record,) = json.loads(text)["keys"]
    assert record["scope"] == "write" and record["name"] == "ci"

    assert main(["keys", "list", "--root", str(root), "--json"]) == ExitCode.OK
    listed = capsys.readouterr().out
    assert key not in listed and hash_key(key) not in listed
    (shown,) = json.loads(listed)
    assert shown["id"] == record["id"] and shown["scope"] == "write" and shown["prefix"] == key[:8]
    assert main(["keys", "list", "--root", str(root)]) == ExitCode.OK
    assert key not in capsys.readouterr().out


def test_keys_revoke_removes_the_key_and_an_unknown_id_exits_not_found(root: Path, capsys) -> None:
    """issue #16 item 1: `everos keys revoke ID` removes that key only; an unknown id exits 5."""
    _, kept = create_key(root, "read")
    _, gone = create_key(root, "admin")
    assert main(["keys", "revoke", gone.id, "--root", str(root)]) == ExitCode.OK
    assert [k.id for k in list_keys(root)] == [kept.id]
    assert main(["keys", "revoke", gone.id, "--root", str(root)]) == ExitCode.NOT_FOUND
    assert "no key with id" in capsys.readouterr().err
    assert stat.S_IMODE((root / KEY_FILENAME).stat().st_mode) == 0o600


def test_keys_create_refuses_a_bad_scope_or_name(root: Path, capsys) -> None:
    """issue #16 item 1: an unknown scope is a usage error (2), a bad name too; nothing is stored."""
    with pytest.raises(SystemExit) as exited:
        main(["keys", "create", "--scope", "root", "--root", str(root)])
    assert exited.value.code == ExitCode.USAGE
    assert main(["keys", "create", "--scope", "read", "--name", "a b", "--root", str(root)]) == ExitCode.USAGE
    assert list_keys(root) == []


@pytest.mark.parametrize(("method", "path", "needed"), [
    ("GET", "/api/v1/knowledge/documents", "read"),
    ("HEAD", "/api/v2/knowledge/documents/doc_1", "read"),
    ("POST", "/api/v1/knowledge/search", "read"),
    ("GET", "/metrics", "read"),
    ("GET", "/openapi.json", "read"),
    ("POST", "/mcp", "read"),
    ("POST", "/api/v1/knowledge/documents", "write"),
    ("PUT", "/api/v1/knowledge/documents/doc_1", "write"),
    ("PATCH", "/api/v1/knowledge/documents/doc_1", "write"),
    ("DELETE", "/api/v1/knowledge/documents/doc_1", "write"),
    ("POST", "/api/v1/knowledge/reextract", "write"),
    ("POST", "/api/v1/knowledge/documents/doc_1/reextract", "write"),
    ("POST", "/api/v1/knowledge/tasks/t_1/retry", "admin"),
    ("POST", "/api/v2//knowledge/tasks/t_1/retry/", "admin"),
    ("GET", "/api/v1/cascade/status", "admin"),
    ("POST", "/api/v2/cascade/fix", "admin"),
    ("POST", "//api/v1/cascade//fix", "admin"),
])
def test_required_scope(method: str, path: str, needed: str) -> None:
    """issue #16 item 1: the scope table (read < write < admin), stray slashes changing nothing."""
    assert required_scope(method, path) == needed


def test_key_ring_sees_a_new_and_a_revoked_key_after_its_interval(root: Path) -> None:
    """issue #16 item 1: the ring stats the file at most once per interval and reloads on change."""
    now = [0.0]
    ring = KeyRing(root, interval_s=1.0, clock=lambda: now[0])
    assert not ring.required
    key, record = create_key(root, "read")
    assert ring.lookup(key) is None  # within the interval: not looked at yet
    now[0] = 1.0
    assert ring.lookup(key) == record and ring.required
    assert ring.lookup(key + "x") is None and ring.lookup("") is None
    revoke_key(root, record.id)
    now[0] = 2.0
    assert ring.lookup(key) is None and not ring.required


def test_a_damaged_key_file_closes_the_ring(root: Path) -> None:
    """issue #16 item 1: a key file that cannot be parsed requires a key and accepts none."""
    (root / KEY_FILENAME).write_text("{not json")
    ring = KeyRing(root)
    assert ring.required and ring.lookup("evk_anything") is None
    with pytest.raises(ConfigError, match="not a key file"):  # and the server does not start with it
        check_bind_auth("127.0.0.1", ring)


def test_a_key_file_damaged_while_serving_keeps_the_keys_loaded_before(root: Path) -> None:
    """issue #16 item 1: a damaged file does not drop (or open) the keys a running server has."""
    now = [0.0]
    key, _ = create_key(root, "read")
    ring = KeyRing(root, clock=lambda: now[0])
    (root / KEY_FILENAME).write_text("[]")
    now[0] = 5.0
    assert ring.lookup(key) is not None and ring.problem is not None


def test_a_non_loopback_bind_without_a_key_is_refused_unless_insecure(root: Path) -> None:
    """issue #16 item 1: beyond loopback with no key is a config error, unless --insecure-no-auth."""
    ring = KeyRing(root)
    with pytest.raises(ConfigError, match="--insecure-no-auth"):
        check_bind_auth("0.0.0.0", ring)
    check_bind_auth("0.0.0.0", ring, insecure_no_auth=True)
    check_bind_auth("127.0.0.1", ring)
    check_bind_auth("::1", ring)
    create_key(root, "admin")
    check_bind_auth("192.0.2.1", KeyRing(root))


async def test_serve_refuses_a_non_loopback_bind_without_a_key_before_listening(root: Path, monkeypatch) -> None:
    """issue #16 item 1: serve() stops with ConfigError (exit 1) before it listens or opens a store
    (the bind probe is stubbed: no real non-loopback socket in a test)."""
    monkeypatch.setattr("everos.server.check_bindable", lambda host, port: None)
    with pytest.raises(ConfigError, match="no API key exists"):
        await serve(loaded_config(root, api__host="0.0.0.0"))
    assert not (root / ".index").exists()  # no store was opened


async def test_the_cli_client_sends_everos_api_key_and_names_it_on_401(monkeypatch) -> None:
    """issue #16 item 1: ApiClient sends $EVEROS_API_KEY as a bearer key; 401/403 exit CONFIG with a hint."""
    import httpx

    from everos.client import ApiClient, ApiError

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(401, json={"error": {"code": "UNAUTHORIZED", "message": "needs a key"}})

    monkeypatch.setenv("EVEROS_API_KEY", "evk_fromenv")
    async with ApiClient("http://everos.test", transport=httpx.MockTransport(answer), max_retries=0) as client:
        with pytest.raises(ApiError) as raised:
            await client.data("GET", "/api/v1/knowledge/documents")
    assert seen == ["Bearer evk_fromenv"]
    assert raised.value.exit_code == ExitCode.CONFIG and "EVEROS_API_KEY" in raised.value.message
    monkeypatch.delenv("EVEROS_API_KEY")
    async with ApiClient("http://everos.test", transport=httpx.MockTransport(answer), max_retries=0) as client:
        await client.request("GET", "/")
    assert seen[-1] is None
