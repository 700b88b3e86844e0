"""The load a run puts on the server through the knowledge API: the corpus uploaded at the
scenario's concurrency, the wait until the queues have drained, and (against someone's server)
deleting what the run uploaded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import httpx
import trio

__all__ = ["API", "delete_documents", "drain", "upload_all"]

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


async def drain(url: str, timeout_s: float) -> float | None:
    """Seconds until no ingest job, no index row and no document awaiting indexing is left.

    The /health blocks are refreshed in the background about once a second, so "drained" must
    be seen on two probes more than that apart."""
    started = time.monotonic()
    quiet_since: float | None = None
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        with trio.move_on_after(timeout_s):
            while True:
                with contextlib.suppress(httpx.HTTPError, KeyError, TypeError):
                    health = (await client.get("/health")).json()
                    cascade = health.get("cascade") or {}
                    pending = (health["ingest"]["pending"] + cascade.get("pending", 0)
                               + (cascade.get("index_status") or {}).get("pending", 0))
                    now = time.monotonic()
                    if pending:
                        quiet_since = None
                    elif quiet_since is None:
                        quiet_since = now
                    elif now - quiet_since >= 1.5:
                        return round(quiet_since - started, 2)
                await trio.sleep(0.25)
    return None


async def delete_documents(url: str, doc_ids: list[str]) -> int:
    """Delete what a run against someone's server uploaded; returns how many deletes succeeded."""
    deleted = 0
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for doc_id in dict.fromkeys(doc_ids):
            with contextlib.suppress(httpx.HTTPError):
                deleted += (await client.delete(f"{API}/documents/{doc_id}")).status_code in (200, 204)
    return deleted
