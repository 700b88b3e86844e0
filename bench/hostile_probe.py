"""A black-box probe with hostile input (issue #16): every kind of bad request the issue's probe
sent, and more, against an ``everos server start`` subprocess on a fresh root.

After each request it compares what a request could have changed: every file under the root
(outside the derived index, the lock and the log: their digests) and every document, topic and
task the API lists. A refused request (4xx) that changed any of it is a *partial write*; any 5xx,
or no answer within 15 s, is a failure. A refusal that only adds a failed task (an upload whose
conversion found nothing to keep: the task records why, for ``everos tasks --dead``) is counted
apart. Requests the server accepts (2xx: a hostile-looking but valid title, say) are allowed their
writes, and the state is taken again.

Prints one JSON object: requests sent by kind, statuses by kind, 5xx answers, partial writes,
requests that got no answer, and the first few of each failure.

    python bench/hostile_probe.py [--keep-root]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import trio

from everos.config import render_template
from everos.testing.replay._server import ManagedServer, settings_env

API = "/api/v1/knowledge"
MAX_UPLOAD = 1_048_576  # small, so oversized bodies are cheap to send
SKIP = (".index", ".lock", "server.log")
BAD_STRINGS: list[Any] = [{}, 5, ["x"], None, True, 1.5, "", " ", "\t\n", "a" * 5000, "\ud800", "x\udfffy",
                          "../x", "a/b", "a\\b", "\x00", "x\x00y", ".hidden", "..", "CON", "\u202eevil", "😀" * 300]
BAD_SCOPES = [".x", "..", "../up", "a/b", "\x00", "", " ", "a" * 300, "\ud800", "x y", "-", "*", "%2e%2e"]
BAD_IDS = ["..", "%2e%2e", "d_" + "0" * 500, "d_zzzzzzzzzzzz", "t_", "\u0000", "😀", "d_0123456789ab/..", " "]


def state(root: Path) -> dict[str, str]:
    """Digest of every file a request could have written."""
    out = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not relative.startswith(SKIP):
            out[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


async def api_state(client: httpx.AsyncClient) -> list[Any]:
    """Every document (in full) with its topics, and the tasks, as the API shows them."""
    documents = (await client.get(f"{API}/documents", params={"page_size": 100})).json()["data"]["documents"]
    full = []
    for doc in documents:
        body = (await client.get(f"{API}/documents/{doc['doc_id']}")).json()["data"]
        full.append({k: v for k, v in body.items() if k not in ("index_status", "index_error", "updated_at")})
    tasks = (await client.get(f"{API}/tasks", params={"page_size": 100})).json()["data"]["tasks"]
    return [full, sorted((t["task_id"], t["status"], t["attempts"]) for t in tasks)]


def raw_json(value: Any) -> bytes:
    """JSON with lone surrogates written as escapes (json.dumps does this; httpx's json= would fail)."""
    return json.dumps(value).encode()


def query(params: dict[str, Any]) -> str:
    """A query string of ``params``, percent-encoding what httpx would refuse (lone surrogates)."""
    return "&".join(f"{name}={urllib.parse.quote(str(value).encode('utf-8', 'surrogatepass'))}"
                    for name, value in params.items())


def form(title: Any = "Probe", filename: str = "probe.md", data: bytes = b"# Probe\n\nText.\n",
         **fields: Any) -> dict[str, Any]:
    """A multipart upload written by hand, so names and values may hold what a well-behaved client
    would refuse to encode (lone surrogates, NUL)."""
    boundary = "hostileprobe"

    def text(value: Any) -> bytes:
        return str(value).encode("utf-8", "surrogatepass")

    body = b""
    for name, value in {"title": title, **fields}.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n".encode()
                 + text(value) + b"\r\n")
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"".encode() + text(filename)
             + b"\"\r\nContent-Type: text/markdown\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode())
    return {"content": body, "headers": {"content-type": f"multipart/form-data; boundary={boundary}"}}


def cases(doc_id: str, topic_id: str, task_id: str) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(kind, method, path, httpx arguments) of each hostile request."""
    document = f"{API}/documents/{doc_id}"
    for value in BAD_STRINGS:
        for field in ("title", "category_id"):
            yield "patch_fields", "PATCH", document, {"content": raw_json({field: value}),
                                                      "headers": {"content-type": "application/json"}}
    for body in (b"", b"{", b"[]", b"null", b'"x"', b"{}", b'{"title": "a", "zzz": 1}', b"\xff\xfe",
                 b'{"title": NaN}', b"[" * 100_000 + b"]" * 100_000, b'{"title": "' + b"a" * 2_000_000 + b'"}'):
        yield "patch_bodies", "PATCH", document, {"content": body, "headers": {"content-type": "application/json"}}
    for scope in BAD_SCOPES:
        for field in ("app_id", "project_id"):
            yield "scopes", "POST", f"{API}/documents", form(**{field: scope})
            yield "scopes", "POST", f"{API}/search", {"content": raw_json({"query": "probe", field: scope}),
                                                       "headers": {"content-type": "application/json"}}
            yield "scopes", "GET", f"{API}/documents?{query({field: scope})}", {}
            yield "scopes", "GET", f"{API}/categories?{query({field: scope})}", {}
    for value in BAD_STRINGS:
        yield "upload_fields", "POST", f"{API}/documents", form(title=json.dumps(value) if not isinstance(value, str)
                                                               else value)
        yield "upload_fields", "POST", f"{API}/documents", form(category_id=value if isinstance(value, str)
                                                               else json.dumps(value))
    for filename in ("../../etc/passwd", "/abs.md", "a\x00b.md", "", ".", "..", "x" * 1000 + ".md", "noext",
                     "evil.exe", "a\\..\\b.md", "\ud800.md", "CON.md"):
        yield "upload_files", "POST", f"{API}/documents", {**form(filename=filename), "what": f"filename {filename!r}"}
    for data in (b"", b"\x00" * 1000, b"\xff\xfe\xfd" * 1000, b"%PDF-1.4 broken", b"PK\x03\x04 not a zip",
                 b"x" * (MAX_UPLOAD + 1), b"<html><script>alert(1)</script></html>", b"\n" * 100_000):
        yield "upload_files", "POST", f"{API}/documents", {**form(data=data), "what": f"file {data[:24]!r} ({len(data)} B)"}
    boundary_cases = [
        ({"content-type": "multipart/form-data"}, b"--x\r\n"),
        ({"content-type": "multipart/form-data; boundary=x"}, b"garbage"),
        ({"content-type": "multipart/form-data; boundary=x"}, b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--"),
        ({"content-type": "multipart/form-data; boundary=x"}, b"--x\r\n" * 5000),
        ({"content-type": "application/json"}, b'{"title": "t", "file": "x"}'),
        ({"content-type": "text/plain"}, b"# just text"),
        ({}, b""),
    ]
    for headers, body in boundary_cases:
        yield "upload_framing", "POST", f"{API}/documents", {"content": body, "headers": headers}
    search_bodies = [{"query": value} for value in BAD_STRINGS if value != "probe"] + [
        {"query": "x", "top_k": value} for value in (-1, 0, 10**9, "10", None, 1.5, [], True)] + [
        {"query": "x", "method": value} for value in ("x", "", None, 5, "KEYWORD ")] + [
        {"query": "x", "score_threshold": value} for value in (-1, 2, "0.5", [], 1e308)] + [
        {"query": "x", "include_content": value} for value in ("yes", 2, None)] + [
        {"query": "x", "unknown": 1}, {}, {"query": "q" * 1_000_000}]
    for body in search_bodies:
        yield "search_bodies", "POST", f"{API}/search", {"content": raw_json(body),
                                                         "headers": {"content-type": "application/json"}}
    for body in (b"", b"not json", b"[1]", b'{"query": NaN}', b"\xff", b"[" * 50_000):
        yield "search_bodies", "POST", f"{API}/search", {"content": body, "headers": {"content-type": "application/json"}}
    for bad in BAD_IDS:
        for method, template in (("GET", "/documents/{}"), ("PATCH", "/documents/{}"), ("DELETE", "/documents/{}"),
                                 ("PUT", "/documents/{}"), ("POST", "/documents/{}/reextract"),
                                 ("GET", "/topics/{}"), ("GET", "/tasks/{}"), ("POST", "/tasks/{}/retry")):
            arguments: dict[str, Any] = form() if method == "PUT" else {}
            if method == "PATCH":
                arguments = {"content": b'{"title": "x"}', "headers": {"content-type": "application/json"}}
            yield "path_ids", method, f"{API}{template.format(urllib.parse.quote(bad, safe='/%._-'))}", arguments
    for params in ({"page": -1}, {"page": "x"}, {"page_size": 10**9}, {"page_size": 0}, {"sort_by": "'; DROP"},
                   {"order": "sideways"}, {"status": "nope"}, {"page": 10**30}):
        yield "query_params", "GET", f"{API}/documents", {"params": params}
        yield "query_params", "GET", f"{API}/tasks", {"params": params}
    for headers in ({"x-request-id": "x" * 10_000}, {"x-request-id": "\u00ff\u00fe".encode("latin-1")}, {"idempotency-key": ""},
                    {"idempotency-key": "k" * 10_000}, {"prefer": "respond-async" * 100},
                    {"authorization": "Bearer " + "a" * 5000}, {"accept": "\x7f"}):
        upload = form(title="Headers")
        yield "headers", "POST", f"{API}/documents", {**upload, "headers": {**upload["headers"], **headers}}
    for method in ("PROPFIND", "TRACE", "CONNECT", "OPTIONS", "BREW"):
        yield "methods", method, f"{API}/documents", {}
    for body in (b"", b"{", b'{"jsonrpc": "2.0"}', b'{"jsonrpc":"2.0","id":1,"method":"tools/call",'
                 b'"params":{"name":"knowledge_add_document","arguments":{"title":{},"content":5}}}', b"[]" * 1000):
        yield "mcp", "POST", "/mcp", {"content": body, "headers": {"content-type": "application/json",
                                                                  "accept": "application/json, text/event-stream"}}
    for body in (b"{}", b'{"apply": "yes"}', b'{"apply": true, "rows": "all"}', b"[", b'{"doc_dir": "../../"}'):
        yield "cascade", "POST", "/api/v1/cascade/fix", {"content": body, "headers": {"content-type": "application/json"}}
    del topic_id, task_id  # the ids of real rows: the cases above probe made-up ones


async def keep_alive_after_early_refusal(url: str) -> dict[str, Any]:
    """issue #16 bug 4: after an early 413 (body not read), the next request on a kept-alive
    connection, with ``Connection: close`` and over HTTP/1.0, each gets its answer."""
    outcomes: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        big = await client.post(f"{API}/documents", files={"file": ("big.md", b"x" * (MAX_UPLOAD * 2))},
                                data={"title": "Big"})
        after = await client.get("/health")
        outcomes["413_then_next_request"] = [big.status_code, after.status_code]
        closing = await client.get(f"{API}/documents", headers={"connection": "close"})
        outcomes["connection_close"] = closing.status_code
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(f"GET {API}/documents HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
    reply = b""
    with trio.move_on_after(10):
        while chunk := await stream.receive_some(65536):
            reply += chunk
    await stream.aclose()
    outcomes["http_1_0"] = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/") else "no answer"
    return outcomes


async def main(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="everos-bench-hostile-"))
    root = base / "root"
    root.mkdir()
    (root / "everos.toml").write_text(render_template())
    server = ManagedServer(root, settings_env({"embedding__model": "hashing",
                                               "knowledge__max_upload_bytes": MAX_UPLOAD}), None)
    await server.start()
    sent: Counter[str] = Counter()
    statuses: dict[str, Counter[str]] = defaultdict(Counter)
    failures: dict[str, list[str]] = {"5xx": [], "partial_write": [], "no_answer": []}
    failed_tasks_recorded: Counter[str] = Counter()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            created = (await client.post(f"{API}/documents", **form(title="Target",
                                                                    data=b"# Target\n\n## Part\n\nWords.\n"))).json()
            assert "data" in created, created
            doc_id = created["data"]["doc_id"]
            topic_id = (await client.get(f"{API}/documents/{doc_id}")).json()["data"]["topics"][0]["topic_id"]
            task_id = "t_" + doc_id[2:]
            before = (state(root), await api_state(client))
            for kind, method, path, arguments in cases(doc_id, topic_id, task_id):
                sent[kind] += 1
                what = arguments.pop("what", None) or str(arguments)[:120]
                label = f"{kind} {method} {path[:80]} {what!r}"
                try:
                    with trio.fail_after(15):
                        response = await client.request(method, path, **arguments)
                except (httpx.TransportError, trio.TooSlowError) as exc:
                    statuses[kind]["no answer"] += 1
                    failures["no_answer"].append(f"{label}: {exc.__class__.__name__}")
                    continue
                statuses[kind][str(response.status_code)] += 1
                if response.status_code >= 500:
                    failures["5xx"].append(f"{label}: {response.status_code} {response.text[:200]}")
                after = (state(root), await api_state(client))
                if response.status_code >= 400 and after != before:
                    # A task that failed (an upload whose conversion or extraction found nothing to
                    # keep) stays listed, with its error, for `everos tasks --dead`: a record of
                    # the refusal, not a write of the document.
                    only_tasks = after[0] == before[0] and after[1][0] == before[1][0]
                    if only_tasks:
                        failed_tasks_recorded[kind] += 1
                    else:
                        failures["partial_write"].append(f"{label}: {response.status_code}")
                before = after
            keep_alive = await keep_alive_after_early_refusal(server.url)
    finally:
        await server.stop()
        if not args.keep_root:
            shutil.rmtree(base, ignore_errors=True)
    return {
        "requests": sum(sent.values()), "by_kind": dict(sent),
        "statuses_by_kind": {kind: dict(counts) for kind, counts in statuses.items()},
        "5xx": len(failures["5xx"]), "partial_writes": len(failures["partial_write"]),
        "no_answer": len(failures["no_answer"]), "failed_tasks_recorded": dict(failed_tasks_recorded),
        "keep_alive_after_early_refusal": keep_alive,
        "examples": {name: found[:5] for name, found in failures.items() if found},
        **({"root": str(root)} if args.keep_root else {}),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep-root", action="store_true", help="leave the server's root for a look")
    result = trio.run(main, parser.parse_args())
    json.dump(result, sys.stdout, indent=2, ensure_ascii=False)
    print()
    sys.exit(0 if not (result["5xx"] or result["partial_writes"] or result["no_answer"]) else 1)
