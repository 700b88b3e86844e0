"""Waiting after the uploads (``everos ingest --wait``): poll each accepted upload's task until
its extraction has ended, then its document until it is indexed (or failed), in upload order,
within one deadline; each settled record goes to the manifest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TextIO

import trio

from everos.client import ApiClient, ApiError
from everos.folder_ingest._manifest import FileRecord, Manifest, needs_settling
from everos.folder_ingest._progress import Progress
from everos.folder_ingest._summary import final_outcome
from everos.folder_ingest._upload import DOCUMENTS_PATH

__all__ = ["settle", "settle_all"]

TASKS_PATH = "/api/v1/knowledge/tasks"
TASK_RUNNING = frozenset({"queued", "running"})
TASK_FAILED = frozenset({"failed", "dead"})
POLL_INTERVAL_S = 0.25


async def settle(client: ApiClient, record: FileRecord) -> FileRecord:
    """Wait until ``record``'s extraction has ended and its document is indexed (or failed);
    return the record as it then is. Polls every ``POLL_INTERVAL_S``; cancel it to stop waiting.

    Raises:
        CommandError: the server cannot be reached (``UNREACHABLE``).
    """
    try:
        if record.status == "accepted":
            task = await _poll(client, f"{TASKS_PATH}/{record.task_id}", lambda t: t["status"] not in TASK_RUNNING)
            if task["status"] in TASK_FAILED:
                return dataclasses.replace(record, status="failed", reason=f"extraction {task['status']}: "
                                                                           f"{task.get('last_error')}")
            record = dataclasses.replace(record, status="created", doc_id=task.get("doc_id") or record.doc_id)
        document = await _poll(client, f"{DOCUMENTS_PATH}/{record.doc_id}",
                               lambda d: d.get("index_status") != "pending")
    except ApiError as exc:
        return dataclasses.replace(record, status="failed", reason=exc.message)
    index_status = document.get("index_status") or "unknown"  # a server without a cascade says None
    reason = f"index failed: {document.get('index_error')}" if index_status == "failed" else None
    return dataclasses.replace(record, index_status=index_status, reason=reason)


async def _poll(client: ApiClient, path: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    while not done(answer := await client.data("GET", path)):
        await trio.sleep(POLL_INTERVAL_S)
    return answer


async def settle_all(client: ApiClient, manifest: Manifest, records: list[FileRecord], timeout_s: float,
                     stream: TextIO) -> list[FileRecord]:
    """Settle every acknowledged record not yet indexed, in upload order (the server works
    roughly in that order, so each poll mostly finds its document done), for at most
    ``timeout_s``; the ones left are returned as they were. Each settled record is appended to the
    manifest, so a rerun does not ask again."""
    pending = [r for r in records if needs_settling(r)]
    settled = {r.path: r for r in records}
    if not pending:
        return records
    progress = Progress("index", len(pending), stream)
    with trio.move_on_after(timeout_s):
        for record in pending:
            settled[record.path] = done = await settle(client, record)
            await manifest.append(done)
            progress.advance(failed=final_outcome(done, waited=True) == "failed")
    progress.close()
    return [settled[r.path] for r in records]
