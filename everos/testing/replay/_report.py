"""The end of a run's report: what the server lists, indexes and reports dead for the run's
documents after the drain, latencies as percentiles, and the guarantees that broke (``breaches``).
"""

from __future__ import annotations

import contextlib
import statistics
from typing import Any

import httpx

from everos.testing.replay._load import API
from everos.testing.replay._scenarios import ReplayOptions, Scenario

__all__ = ["breaches", "percentiles", "verify"]


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95, p99 and max of ``values`` (seconds), in milliseconds; None each when there are none."""
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {"p50": round(statistics.median(ordered) * 1000, 1), "p95": pick(0.95), "p99": pick(0.99),
            "max": round(ordered[-1] * 1000, 1)}


def extractor_kind(extractor: str | None) -> str:
    """``llm``, ``builtin``, ``builtin (llm fallback)`` (the reason cut off) or ``unknown``."""
    if not extractor:
        return "unknown"
    return extractor.split(":", 1)[0] + ")" if extractor.startswith("builtin (llm fallback") else extractor


async def documents_now(client: httpx.AsyncClient, doc_ids: list[str]) -> dict[str, Any]:
    """What ``GET /documents/{id}`` says about each listed acknowledged document: counts per
    ``index_status``, those searchable by keyword only (vectors pending) and per extractor."""
    statuses: dict[str, int] = {}
    extractors: dict[str, int] = {}
    keyword_only = 0
    for doc_id in doc_ids:
        with contextlib.suppress(httpx.HTTPError, KeyError, TypeError, ValueError):
            document = (await client.get(f"{API}/documents/{doc_id}")).json()["data"]
            status = str(document.get("index_status"))
            statuses[status] = statuses.get(status, 0) + 1
            keyword_only += str(document.get("index_error") or "").startswith("vectors pending")
            kind = extractor_kind(document.get("extractor"))
            extractors[kind] = extractors.get(kind, 0) + 1
    return {"index_status": statuses, "keyword_only": keyword_only, "extractors": extractors}


async def verify(url: str, acknowledged: list[str], scope: dict[str, str],
                 unsearchable: list[str] = ()) -> dict[str, Any]:
    """The end check after the drain: the run's documents as the server lists, indexes and reports
    them dead, the jobs still running, and the index rows still open."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        cascade = (await client.get("/health")).json().get("cascade") or {}
        listed: list[dict] = []
        page = 1
        while True:
            data = (await client.get(f"{API}/documents",
                                     params={"page": page, "page_size": 100, **scope})).json()["data"]
            listed.extend(data["documents"])
            if page * 100 >= data["total"]:
                break
            page += 1
        running = (await client.get(f"{API}/tasks", params={"status": "running", "page_size": 100})).json()["data"]
        dead = []
        for status in ("dead", "failed"):
            tasks = (await client.get(f"{API}/tasks", params={"status": status, "page_size": 100})).json()["data"]
            dead.extend(tasks["tasks"])
        wanted = set(acknowledged)
        documents = await documents_now(client, sorted(wanted & {d["doc_id"] for d in listed}))
    # Only this run's documents and tasks: a server you run has its own.
    listed_ids = [d["doc_id"] for d in listed]
    dead = [t for t in dead if t["doc_id"] in wanted]
    running["tasks"] = [t for t in running["tasks"] if t["doc_id"] in wanted]
    dead_ids = {t["doc_id"] for t in dead}
    return {
        "documents_listed": len(listed_ids),
        "documents_indexed": sum(1 for d in listed if d.get("index_status", "indexed") == "indexed"),
        "duplicates_listed": len(listed_ids) - len(set(listed_ids)),
        "documents_dead": len(wanted & dead_ids),
        "dead_without_error": sum(1 for t in dead if not t.get("last_error")),
        "documents_missing": sorted(wanted - set(listed_ids) - dead_ids),
        "documents_not_searchable": sorted(set(unsearchable) - dead_ids),
        "jobs_running_after_drain": len(running["tasks"]),
        "documents_index_pending": documents["index_status"].get("pending", 0),
        "documents_keyword_only": documents["keyword_only"],
        "index_status": documents["index_status"],
        "extractors": documents["extractors"],
        # The whole server's index queue (a server you run may have rows of its own).
        "index_rows_open": sum((cascade.get("depth") or {}).get(state, 0) for state in ("queued", "running")),
    }


def breaches(report: dict[str, Any], scenario: Scenario, options: ReplayOptions) -> list[str]:
    """Every guarantee the run broke, one line each (see :mod:`everos.testing.replay`)."""
    found = []
    health = report["health"]
    if health["failures"]:
        found.append(f"G2: {health['failures']} health probes failed or took over {options.health_timeout_s:g} s")
    if report["uploads"]["unanswered"] and not scenario.kill_restart:
        found.append(f"G1: {report['uploads']['unanswered']} uploads got no answer within their deadline")
    end = report["end"]
    if end["documents_missing"]:
        found.append(f"G6: {len(end['documents_missing'])} acknowledged documents are missing")
    if end["duplicates_listed"]:
        found.append(f"G6: {end['duplicates_listed']} documents are listed twice")
    if end["documents_not_searchable"]:
        found.append(f"G6: {len(end['documents_not_searchable'])} acknowledged documents (not dead) are not "
                     "found by a keyword search at the end")
    if end["jobs_running_after_drain"] or end["dead_without_error"]:
        found.append("G7: jobs left running after the drain, or dead without an error")
    # Vector passes of a slow embedder may still be queued or running at the end when they kept
    # coming (the drain checked that they do).
    if end["documents_index_pending"] or (end["index_rows_open"] and not report.get("vectors_pending_after_drain")):
        found.append(f"G7: {end['documents_index_pending']} documents still pending indexing and "
                     f"{end['index_rows_open']} index rows queued or running after the drain")
    if report["drain_s"] is None and not report.get("vectors_pending_after_drain"):
        found.append(f"drain: {report.get('drain_failure') or 'the queues did not drain'}")
    if end["documents_dead"] and not scenario.expect_dead:
        found.append(f"{end['documents_dead']} documents died although the scenario recovers")
    return found
