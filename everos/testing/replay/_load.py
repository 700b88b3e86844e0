"""The load a run puts on the server through the knowledge API: the corpus uploaded at the
scenario's concurrency, the wait until the queues have drained, and (against someone's server)
deleting what the run uploaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import httpx
import trio

__all__ = ["API", "Drained", "delete_documents", "drain", "upload_all"]

API = "/api/v1/knowledge"


async def upload_all(url: str, corpus: list[tuple[str, bytes]], concurrency: int, timeout_s: float,
                     on_progress: Callable[[int], Any] | None = None, respond_async: bool = False,
                     scope: dict[str, str] | None = None,
                     on_acknowledged: Callable[[str, int], None] | None = None,
                     interval_s: float = 0.0) -> dict[str, Any]:
    """Upload every document of ``corpus`` with at most ``concurrency`` in flight, each started at
    least ``interval_s`` after the one before; count the answers by kind and status, with their
    latencies and the acknowledged ``doc_id``s (in answer order)."""
    results: dict[str, Any] = {"ok": 0, "accepted": 0, "failed": 0, "unanswered": 0, "latencies": [],
                               "acknowledged": [], "statuses": {}}
    limiter = trio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, index: int, title: str, body: bytes) -> None:
        async with limiter:
            started = time.monotonic()
            try:
                response = await client.post(f"{API}/documents", files={"file": ("doc.md", body)},
                                             data={"title": title, **(scope or {})},
                                             headers={"Prefer": "respond-async"} if respond_async else {})
            except httpx.HTTPError:
                results["unanswered"] += 1
                return
            results["latencies"].append(time.monotonic() - started)
            results["statuses"][str(response.status_code)] = results["statuses"].get(str(response.status_code), 0) + 1
            if response.status_code in (200, 201, 202):
                results["ok" if response.status_code != 202 else "accepted"] += 1
                doc_id = response.json()["data"]["doc_id"]
                results["acknowledged"].append(doc_id)
                if on_acknowledged is not None:
                    on_acknowledged(doc_id, index)
            else:
                results["failed"] += 1
            if on_progress is not None:
                await on_progress(len(results["acknowledged"]))

    async with httpx.AsyncClient(base_url=url, timeout=timeout_s,
                                 limits=httpx.Limits(max_connections=max(10, concurrency))) as client:
        async with trio.open_nursery() as nursery:
            for index, (title, body) in enumerate(corpus):
                if index and interval_s:
                    await trio.sleep(interval_s)
                nursery.start_soon(one, client, index, title, body)
    return results


@dataclasses.dataclass
class Drained:
    """How a drain ended: seconds until the keyword index had every document (``keyword_s``), and
    until the vectors were made too (``all_s``); None where that did not happen, with ``why``."""

    keyword_s: float | None = None
    all_s: float | None = None
    why: str | None = None
    vectors_left: int = 0  # documents still waiting for vectors at the end, which kept coming


def _backlog(health: dict[str, Any]) -> tuple[int, int, int]:
    """From one /health answer: work before keyword search finds everything (ingest jobs, index
    rows, documents awaiting their index, less the rows that only make vectors), the index rows
    open, and the documents searchable by keyword only (vectors pending)."""
    cascade = health.get("cascade") or {}
    rows = cascade.get("pending", 0)
    vectors = cascade.get("vectors_pending", 0)
    keyword = health["ingest"]["pending"] + max(0, rows - vectors) + (cascade.get("index_status") or {}).get("pending", 0)
    return keyword, rows, vectors


async def drain(url: str, timeout_s: float, *, wait_for_vectors: bool = True, vectors_timeout_s: float = 600.0,
                vectors_stall_s: float = 300.0) -> Drained:
    """Wait until no ingest job, no index row and no document awaiting indexing is left, within
    ``timeout_s``; then (``wait_for_vectors``) until no document waits for its vectors either, for
    at most ``vectors_timeout_s`` more, as long as that backlog shrinks at least every
    ``vectors_stall_s`` (else ``why`` says so). A slow built-in embedder makes vectors in the
    background while keyword search finds every document (e5 on two busy cores: about a text a
    second, so twenty 80 KB documents take most of an hour); if they are still coming at the
    end, ``vectors_left`` counts the documents waiting, and that is no failure.

    The /health blocks are refreshed in the background about once a second, so "drained" must
    be seen on two probes more than that apart."""
    started = time.monotonic()
    result = Drained()
    quiet_since: float | None = None
    last_vectors, progress_at = 0, started
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        with trio.move_on_after(timeout_s + (vectors_timeout_s if wait_for_vectors else 0.0)):
            while True:
                with contextlib.suppress(httpx.HTTPError, KeyError, TypeError):
                    keyword, rows, vectors = _backlog((await client.get("/health")).json())
                    now = time.monotonic()
                    if result.keyword_s is None and not keyword:
                        result.keyword_s = round(now - started, 2)
                        progress_at = now
                    if result.keyword_s is None and now - started > timeout_s:
                        result.why = f"the queues did not drain within {timeout_s:g} s"
                        return result
                    pending = keyword + rows + (vectors if wait_for_vectors else 0)
                    if pending:
                        quiet_since = None
                    elif quiet_since is None:
                        quiet_since = now
                    elif now - quiet_since >= 1.5:
                        result.all_s = round(quiet_since - started, 2)
                        return result
                    if vectors < last_vectors:
                        progress_at = now
                    last_vectors = vectors
                    if result.keyword_s is not None and now - started - result.keyword_s > vectors_timeout_s:
                        break
                    if result.keyword_s is not None and now - progress_at > vectors_stall_s:
                        result.why = (f"{vectors} documents still wait for their vectors, and none got them "
                                      f"in the last {vectors_stall_s:g} s")
                        return result
                await trio.sleep(0.25)
    if result.keyword_s is None:
        result.why = f"the queues did not drain within {timeout_s:g} s"
    elif wait_for_vectors:
        result.vectors_left = last_vectors
    return result


async def delete_documents(url: str, doc_ids: list[str]) -> int:
    """Delete what a run against someone's server uploaded; returns how many deletes succeeded."""
    deleted = 0
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for doc_id in dict.fromkeys(doc_ids):
            with contextlib.suppress(httpx.HTTPError):
                deleted += (await client.delete(f"{API}/documents/{doc_id}")).status_code in (200, 204)
    return deleted
