"""Backpressure from the index (issue #17 item 4): past ``[cascade] lag_documents`` documents
waiting for their index, uploads still answer (G1), but /health, the upload answers and /metrics
say the index lags, until it has caught up."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from everos.api._answers import parse_index_lag

from ..conftest import HeldIndex, lagging_server
from .test_metrics import scrape, value

API = "/api/v1/knowledge"
LAG = "X-Everos-Index-Lag"


async def upload(client: httpx.AsyncClient, number: int, **headers: str) -> httpx.Response:
    text = f"# Note {number}\n\nPanel {number} turns light into power.\n".encode()
    return await client.post(f"{API}/documents", files={"file": (f"n{number}.md", text)},
                             data={"title": f"Note {number}"}, headers=headers)


async def cascade_block(client: httpx.AsyncClient) -> dict:
    return (await client.get("/health")).json()["cascade"]


async def until_cascade(client: httpx.AsyncClient, lagging: bool) -> dict:
    """The cascade block once it says ``lagging`` (the monitor refreshes it each second)."""
    with trio.fail_after(20):
        while (block := await cascade_block(client))["lagging"] is not lagging:
            await trio.sleep(0.05)
    return block


async def test_health_says_the_index_lags_and_stays_healthy(root: Path, held_index: HeldIndex) -> None:
    async with lagging_server(root, held_index) as server:
        health = (await server.client.get("/health")).json()
        block = health["cascade"]
        assert (block["waiting_documents"], block["lag_documents"], block["healthy"]) == (2, 1, True)
        assert block["index_status"]["pending"] == 2 and block["pending"] == 2
        assert any(note.startswith("the index lags: 2 documents wait") for note in block["notes"])
        assert health["healthy"] and health["reasons"] == [] and health["status"] == "ok"
        assert (await server.client.get("/readyz")).status_code == 200
        held_index.released.set()
        block = await until_cascade(server.client, lagging=False)
        assert block["waiting_documents"] == 0 and block["index_status"]["indexed"] == 2


async def test_uploads_are_still_accepted_and_their_answers_say_the_index_lags(root: Path,
                                                                                held_index: HeldIndex) -> None:
    async with lagging_server(root, held_index) as server:
        created = await upload(server.client, 2)
        assert created.status_code == 201, created.text
        assert set(created.json()["data"]) == {"doc_id", "category_id", "topic_count", "source_name", "md_path",
                                               "original_file_path"}  # EverOS's body, unchanged
        lag = parse_index_lag(created.headers.get(LAG))
        assert lag is not None and lag["bound"] == 1 and lag["documents"] >= 2
        accepted = await upload(server.client, 3, Prefer="respond-async")
        assert accepted.status_code == 202 and LAG in accepted.headers and "Location" in accepted.headers
        duplicate = await upload(server.client, 2)  # the same bytes as a stored document
        assert duplicate.status_code == 200 and duplicate.json()["data"]["duplicate"] and LAG in duplicate.headers
        held_index.released.set()
        await until_cascade(server.client, lagging=False)
        after = await upload(server.client, 4)
        assert after.status_code == 201 and LAG not in after.headers


async def test_a_task_waiting_for_its_index_says_how_many_documents_are_ahead(root: Path,
                                                                             held_index: HeldIndex) -> None:
    """Two documents are held in the index workers, a third waits in the queue: the fourth's task
    has one document ahead, then none once everything is indexed."""
    async with lagging_server(root, held_index) as server:
        assert (await upload(server.client, 2)).status_code == 201
        accepted = await upload(server.client, 3, Prefer="respond-async")
        task_url = accepted.headers["Location"]
        with trio.fail_after(20):
            while (task := (await server.client.get(task_url)).json()["data"])["documents_ahead"] != 1:
                assert task["phase"] in ("queued", "reading", "extracting", "publishing", "indexing"), task
                await trio.sleep(0.05)
        assert task["phase"] == "indexing" and task["index_status"] == "pending"
        held_index.released.set()
        with trio.fail_after(20):
            while (task := (await server.client.get(task_url)).json()["data"])["phase"] != "done":
                await trio.sleep(0.05)
        assert task["documents_ahead"] is None


async def test_a_refused_upload_carries_no_lag_header(root: Path, held_index: HeldIndex) -> None:
    async with lagging_server(root, held_index) as server:
        refused = await server.client.post(f"{API}/documents", files={"file": ("x.md", b"")}, data={"title": "x"})
        assert refused.status_code == 422 and LAG not in refused.headers


async def test_metrics_say_whether_the_index_lags_and_its_bound(root: Path, held_index: HeldIndex) -> None:
    async with lagging_server(root, held_index) as server:
        samples = await scrape(server.client)
        assert value(samples, "everos_cascade_lagging") == 1.0
        assert value(samples, "everos_cascade_lag_documents") == 1.0
        assert value(samples, "everos_cascade_documents", index_status="pending") == 2.0
        assert value(samples, "everos_cascade_queue", state="running") + \
            value(samples, "everos_cascade_queue", state="queued") == 2.0
        assert value(samples, "everos_cascade_oldest_lease_age_seconds") >= 0.0
        held_index.released.set()
        await until_cascade(server.client, lagging=False)
        assert value(await scrape(server.client), "everos_cascade_lagging") == 0.0
