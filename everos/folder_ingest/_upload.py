"""Sending files: each upload with its ``Idempotency-Key`` (from the content hash and the form
fields), at most N in flight, every answer recorded in the manifest before it counts; files the
manifest has acknowledged, unchanged, are not sent again; while the server's index lags, none is
sent (:class:`~everos.folder_ingest._lag.LagGate`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import trio

from everos.client import ApiClient, ApiError
from everos.folder_ingest._lag import LagGate
from everos.folder_ingest._manifest import ACKNOWLEDGED, FileRecord, Manifest
from everos.folder_ingest._progress import Progress
from everos.knowledge._formats import media_type_for

__all__ = ["DOCUMENTS_PATH", "Uploader", "idempotency_key", "outcome"]

DOCUMENTS_PATH = "/api/v1/knowledge/documents"


def idempotency_key(content_sha256: str, form: dict[str, str]) -> str:
    """The ``Idempotency-Key`` of an upload: SHA-256 of the content hash and the form fields. Pure."""
    return hashlib.sha256(json.dumps([content_sha256, sorted(form.items())]).encode()).hexdigest()


def _title(path: Path) -> str:
    return path.stem or path.name


def _read(path: Path) -> tuple[bytes, os.stat_result, str]:
    stat = path.stat()
    data = path.read_bytes()
    return data, stat, hashlib.sha256(data).hexdigest()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(functools.partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def outcome(response: Any) -> tuple[str, dict[str, Any], str | None]:
    """``(status, data, reason)`` of an upload's answer: 201 created, 200 duplicate (or a replayed
    200), 202 accepted, anything else failed with the server's one-line reason. Pure."""
    if response.status_code in (200, 201, 202):
        try:
            data = response.json()["data"]
        except (ValueError, KeyError, TypeError):
            return "failed", {}, f"{response.status_code}: the answer is not an EverOS envelope"
        if response.status_code == 202:
            return "accepted", data, None
        return ("duplicate" if data.get("duplicate") else "created"), data, None
    return "failed", {}, ApiError.from_response(response).message


class Uploader:
    """Sends files with at most ``concurrency`` uploads in flight, recording each answer; with a
    ``lag_gate``, none while the server says its index lags."""

    def __init__(self, client: ApiClient, manifest: Manifest, form: dict[str, str], *, concurrency: int,
                 respond_async: bool, lag_gate: LagGate | None = None) -> None:
        self.client, self.manifest, self.form = client, manifest, form
        self.concurrency = concurrency
        self.lag_gate = lag_gate
        self.headers = {"Prefer": "respond-async"} if respond_async else {}
        self._in_flight: dict[str, trio.Event] = {}
        self._files_limiter = trio.CapacityLimiter(concurrency)

    async def resumable(self, files: Sequence[Path]) -> tuple[list[FileRecord], list[Path]]:
        """Split ``files`` into those the manifest has acknowledged, unchanged, and those to send."""
        resumed, to_send = [], []
        for path in files:
            known = self.manifest.records.get(str(path))
            stat = await trio.to_thread.run_sync(path.stat, limiter=self._files_limiter)
            if known is not None and known.status in ACKNOWLEDGED and known.same_file(stat) \
                    and await trio.to_thread.run_sync(_sha256_file, path, limiter=self._files_limiter) == known.sha256:
                resumed.append(known)
            else:
                to_send.append(path)
        return resumed, to_send

    async def send_all(self, files: Sequence[Path], stream: TextIO) -> list[FileRecord]:
        """Upload ``files``, with progress on ``stream``; every answer is in the manifest before it
        counts. Returns the records in the order of ``files``."""
        if not files:
            return []
        records: dict[Path, FileRecord] = {}
        progress = Progress("ingest", len(files), stream)
        send, receive = trio.open_memory_channel[Path](0)

        async def worker(paths: trio.MemoryReceiveChannel[Path]) -> None:
            async with paths:
                async for path in paths:
                    if self.lag_gate is not None:
                        await self.lag_gate.ready(progress.note)
                    record = await self.send_one(path)
                    await self.manifest.append(record)
                    records[path] = record
                    progress.advance(failed=record.status == "failed")

        try:
            async with trio.open_nursery() as nursery:
                async with send, receive:
                    for _ in range(self.concurrency):
                        nursery.start_soon(worker, receive.clone())
                    for path in files:
                        await send.send(path)
        finally:
            progress.close()
        return [records[path] for path in files]

    async def send_one(self, path: Path) -> FileRecord:
        """Upload one file and return its record (``failed`` with a reason when it was refused or
        cannot be read).

        Raises:
            CommandError: the server cannot be reached (``UNREACHABLE``).
        """
        try:
            data, stat, sha256 = await trio.to_thread.run_sync(_read, path, limiter=self._files_limiter)
        except OSError as exc:
            return FileRecord(str(path), 0, 0, "", "failed", reason=f"cannot read: {exc.strerror or exc}")
        record = FileRecord(str(path), stat.st_size, stat.st_mtime_ns, sha256, "failed")
        form = {"title": _title(path), **self.form}
        # The same bytes twice in one run: the second waits, so it meets the first's dedupe.
        while (earlier := self._in_flight.get(sha256)) is not None:
            await earlier.wait()
        self._in_flight[sha256] = done = trio.Event()
        try:
            response = await self.client.request(
                "POST", DOCUMENTS_PATH, data=form, files={"file": (path.name, data, media_type_for(path.name))},
                headers={"Idempotency-Key": idempotency_key(sha256, {"filename": path.name, **form}), **self.headers})
        finally:
            del self._in_flight[sha256]
            done.set()
        if self.lag_gate is not None:
            self.lag_gate.saw(response.headers)
        status, answer, reason = outcome(response)
        return dataclasses.replace(record, status=status, doc_id=answer.get("doc_id"), task_id=answer.get("task_id"),
                                   reason=reason)
