"""One request id from the client to the model (issue #15 item 6): the id of the request that
queued an upload is in its task, in the log lines of its attempts, and in the ``X-Request-Id`` of
every model call made for it (extraction, embedding); a search's query embedding carries the
search's id; an MCP tool call gets an id of its own."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import trio

from everos import logs
from everos.testing import FakeLLM

from ..conftest import knowledge_server

API = "/api/v1/knowledge"
DOCUMENT = b"# Cats\n\nCats purr when content.\n\n## Dogs\n\nDogs bark at strangers.\n"
UPLOAD_ID = "upload-0001"
SEARCH_ID = "search-0002"


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


async def test_a_record_made_for_a_request_carries_its_id_in_tasks_and_threads() -> None:
    """Logging: the id is read where the record is made, in a child task or a worker thread too;
    outside, no id; a field the caller set wins."""
    stream = io.StringIO()
    logs.configure_logging("INFO", stream, fmt="json")
    log = logging.getLogger("everos.test")
    try:
        with logs.carrying_request_id("abc-1"):
            log.info("in the task")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, log.info, "in a thread")
            log.info("explicit", extra={"fields": {"request_id": "other"}})
            with logs.carrying_request_id(None):
                log.info("hidden")
        log.info("outside")
    finally:
        logs.shutdown_logging()
    ids = {line["msg"]: line.get("request_id") for line in _lines(stream)}
    assert ids == {"in the task": "abc-1", "in a thread": "abc-1", "explicit": "other", "hidden": None,
                   "outside": None}


async def test_an_uploads_request_id_reaches_its_task_its_log_and_its_model_calls(root: Path, nursery) -> None:
    fake = FakeLLM()
    await nursery.start(fake.serve, "127.0.0.1", 0)
    stream = io.StringIO()
    logs.configure_logging("INFO", stream, fmt="json")
    try:
        async with knowledge_server(root, llm__provider="openai", llm__base_url=fake.base_url, llm__model="fake",
                                    embedding__provider="openai", embedding__base_url=fake.base_url,
                                    embedding__model="fake") as server:
            client = server.client
            accepted = await client.post(f"{API}/documents", files={"file": ("a.md", DOCUMENT)},
                                         data={"title": "Pets"},
                                         headers={"Prefer": "respond-async", "X-Request-Id": UPLOAD_ID})
            assert accepted.status_code == 202, accepted.text
            assert accepted.headers["x-request-id"] == UPLOAD_ID
            task_url = f"{API}/tasks/{accepted.json()['data']['task_id']}"
            with trio.fail_after(30):
                while (task := (await client.get(task_url)).json()["data"])["phase"] != "done":
                    await trio.sleep(0.05)
            assert task["request_id"] == UPLOAD_ID
            listed = (await client.get(f"{API}/tasks")).json()["data"]["tasks"]
            assert [t["request_id"] for t in listed] == [UPLOAD_ID]
            before_search = len(fake.requests)
            found = await client.post(f"{API}/search", json={"query": "purring cats", "method": "vector"},
                                      headers={"X-Request-Id": SEARCH_ID})
            assert found.status_code == 200, found.text
    finally:
        logs.shutdown_logging()
    upload_calls = list(fake.requests)[:before_search]
    assert {r.route for r in upload_calls} >= {"chat", "embeddings"}
    assert {r.headers.get("x-request-id") for r in upload_calls} == {UPLOAD_ID}
    search_calls = list(fake.requests)[before_search:]
    assert [r.route for r in search_calls] == ["embeddings"]
    assert search_calls[0].headers.get("x-request-id") == SEARCH_ID
    lines = _lines(stream)
    # The ingest and index attempts ran in workers, long after the request answered: their log
    # lines still name the upload's request.
    indexed = [line for line in lines if line["msg"].startswith("cascade indexed")]
    assert indexed and {line.get("request_id") for line in indexed} == {UPLOAD_ID}
    access = [line for line in lines if line["msg"] == "request" and line.get("path") == f"{API}/search"]
    assert [line["request_id"] for line in access] == [SEARCH_ID]
    nursery.cancel_scope.cancel()
