"""Durable ingest: the 202 path, backpressure, leases and crash recovery (G1, G6, G7, G9)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from everos.testing.replay import free_port

from ..conftest import ingest_services, running_server, write_config
from ..test_cli import wait_healthy

API = "/api/v1/knowledge"


class StalledExtractor:
    """An extractor that never answers, like an LLM that stopped responding."""

    def __init__(self) -> None:
        self.calls = 0

    async def extract(self, source, categories):
        self.calls += 1
        await trio.sleep_forever()


def stalled_server(root: Path, extractor: StalledExtractor, **overrides):
    return running_server(root, services=ingest_services(lambda runtime: extractor), **overrides)


async def post(client, index: int = 0, headers: dict | None = None):
    return await client.post(f"{API}/documents", files={"file": ("d.md", f"# Doc {index}\n\nBody {index}.\n".encode())},
                             data={"title": f"Doc {index}"}, headers=headers or {})


async def test_stalled_extraction_answers_202_within_the_sync_wait_and_health_stays_up(root: Path) -> None:
    """G1/G2: an upload whose extraction hangs still gets an answer, and /health keeps answering."""
    extractor = StalledExtractor()
    async with stalled_server(root, extractor, knowledge__sync_wait_seconds=0.5) as server:
        async with trio.open_nursery() as nursery:
            answers = []

            async def one(index: int) -> None:
                answers.append(await post(server.client, index))

            for index in range(4):
                nursery.start_soon(one, index)
            for _ in range(10):
                with trio.fail_after(1.0):
                    assert (await server.client.get("/health")).status_code == 200
                await trio.sleep(0.05)
        assert [a.status_code for a in answers] == [202] * 4
        task = (await server.client.get(answers[0].json()["data"]["status_url"])).json()["data"]
        assert task["status"] in ("queued", "running")
        with trio.fail_after(5):  # the snapshot is refreshed in the background, about once a second
            while (await server.client.get("/health")).json()["ingest"]["pending"] != 4:
                await trio.sleep(0.1)


async def test_an_accepted_upload_syncs_its_job_row_before_the_answer(root: Path, monkeypatch) -> None:
    """G6: the acceptance point's commit is a durable write (synced, whatever [sqlite]
    synchronous says for the rest); other queue writes are not."""
    from everos.store import LeasedQueue

    durable: list[tuple[str, bool]] = []
    enqueue = LeasedQueue.enqueue

    async def recording(self, kind, payload=None, **kwargs):
        durable.append((kind, kwargs.get("durable", False)))
        return await enqueue(self, kind, payload, **kwargs)

    monkeypatch.setattr(LeasedQueue, "enqueue", recording)
    async with stalled_server(root, StalledExtractor(), knowledge__sync_wait_seconds=0.1) as server:
        assert (await post(server.client)).status_code == 202
    assert ("ingest", True) in durable
    assert all(not synced for kind, synced in durable if kind != "ingest")


async def test_full_queue_answers_429_with_retry_after_and_writes_nothing(root: Path) -> None:
    """G9: the ingest queue is bounded; past it uploads are refused, not buffered."""
    extractor = StalledExtractor()
    async with stalled_server(root, extractor, ingest__max_pending=2) as server:
        for index in range(2):
            assert (await post(server.client, index, {"Prefer": "respond-async"})).status_code == 202
        inbox = root / ".index" / "inbox"
        before = sorted(os.listdir(inbox))
        refused = await post(server.client, 99, {"Prefer": "respond-async"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "QUEUE_SATURATED"
        assert int(refused.headers["retry-after"]) >= 1
        assert sorted(os.listdir(inbox)) == before


async def test_job_past_its_deadline_is_retried_then_dead_with_its_error(root: Path) -> None:
    """G7: a job that keeps timing out does not loop forever; it dies with its last error visible."""
    extractor = StalledExtractor()
    async with stalled_server(root, extractor, ingest__job_timeout_seconds=0.2, ingest__max_attempts=2,
                              ingest__retry_backoff_seconds=0, ingest__workers=1) as server:
        task_url = (await post(server.client, 0, {"Prefer": "respond-async"})).json()["data"]["status_url"]
        with trio.fail_after(10):
            while (task := (await server.client.get(task_url)).json()["data"])["status"] != "dead":
                await trio.sleep(0.05)
        assert task["attempts"] == 2 and extractor.calls == 2
        assert "did not finish within 0.2 s" in task["last_error"]
        dead = (await server.client.get(f"{API}/tasks", params={"status": "dead"})).json()["data"]["tasks"]
        assert [t["task_id"] for t in dead] == [task["task_id"]]


async def test_an_expired_lease_returns_the_job_to_the_queue(root: Path) -> None:
    """G7: a job leased by a worker that vanished is reaped after its lease and done by another."""
    async with running_server(root) as _:
        pass  # creates nothing; the root lock is free again
    async with running_server(root, services=ingest_services(),
                              ingest__reaper_interval_seconds=0.1, ingest__workers=1) as server:
        service = server.services.ingest
        job = (await post(server.client, 0, {"Prefer": "respond-async"})).json()["data"]
        # Meanwhile a "ghost" worker may have leased it; simulate one holding a short lease.
        await service.queue.lease("ghost", 10, 0.2)
        with trio.fail_after(10):
            while (task := (await server.client.get(job["status_url"])).json()["data"])["status"] != "succeeded":
                await trio.sleep(0.05)
        assert task["attempts"] >= 1


def run_server(root: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "everos.cli", "server", "start", "--root", str(root),
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_mid_ingest_then_restart_loses_no_acknowledged_document(tmp_path: Path) -> None:
    """G6/G7: every acknowledged upload is there exactly once after kill -9 and a restart."""
    write_config(tmp_path, "[knowledge]\ndedupe = 'none'\n[ingest]\nworkers = 1\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = run_server(tmp_path, port)
    acknowledged: list[str] = []
    try:
        wait_healthy(url, process)
        with httpx.Client(base_url=url, timeout=10) as client:
            for index in range(30):
                body = ("# Part %d\n\n" % index + "Some words about topic %d. " % index * 2000).encode()
                response = client.post(f"{API}/documents", files={"file": ("d.md", body)},
                                       data={"title": f"Doc {index}"}, headers={"Prefer": "respond-async"})
                assert response.status_code == 202
                acknowledged.append(response.json()["data"]["doc_id"])
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    process = run_server(tmp_path, port)
    try:
        wait_healthy(url, process)
        with httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                counts = client.get("/health").json()["ingest"]["counts"]
                if counts["queued"] == counts["running"] == 0:
                    break
                time.sleep(0.2)
            listed = client.get(f"{API}/documents", params={"page_size": 100}).json()["data"]
        assert sorted(d["doc_id"] for d in listed["documents"]) == sorted(acknowledged)
        assert listed["total"] == len(acknowledged)
        with sqlite3.connect(tmp_path / ".index" / "sqlite" / "everos.db") as conn:
            statuses = dict(conn.execute("SELECT status, count(*) FROM ingest_jobs GROUP BY status").fetchall())
        assert statuses == {"succeeded": len(acknowledged)}
        knowledge = tmp_path / "default_app" / "default_project" / "knowledge"
        dirs = [p.name for p in knowledge.glob("*/*") if p.is_dir()]
        assert sorted(name.rsplit("_", 2)[-2] + "_" + name.rsplit("_", 2)[-1] for name in dirs) == sorted(acknowledged)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        assert process.returncode == 0


class FailingOnMarker:
    """The built-in extractor, except that text containing FAIL-MARKER raises mid-extraction."""

    def __init__(self, runtime) -> None:
        from everos.knowledge import BuiltinExtractor

        self.inner = BuiltinExtractor(runtime.limiters.cpu)

    async def extract(self, source, categories):
        if "FAIL-MARKER" in source.text:
            raise RuntimeError("extractor broke halfway")
        return await self.inner.extract(source, categories)


async def test_a_replace_that_fails_leaves_the_old_version_whole(root: Path) -> None:
    async with running_server(root, services=ingest_services(FailingOnMarker), ingest__max_attempts=1) as server:
        created = (await post(server.client, 1)).json()["data"]
        doc_dir = Path(created["md_path"])
        before = {p.name: p.read_bytes() for p in doc_dir.rglob("*") if p.is_file()}
        response = await server.client.put(f"{API}/documents/{created['doc_id']}",
                                           files={"file": ("d.md", b"# New\n\nFAIL-MARKER here.\n")},
                                           data={"title": "Doc 1"})
        assert response.status_code == 500, response.text
        assert "extractor broke halfway" in response.json()["error"]["message"]
        assert {p.name: p.read_bytes() for p in doc_dir.rglob("*") if p.is_file()} == before
        doc = (await server.client.get(f"{API}/documents/{created['doc_id']}")).json()["data"]
        assert [t["topic_name"] for t in doc["topics"]] == ["Doc 1"]
