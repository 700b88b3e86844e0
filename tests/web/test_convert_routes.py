"""Converted uploads (PDF, DOCX) end to end, on the real server over loopback (issue #12, G10, G13).

The documents are the converter tests' own generators (``tests/knowledge/documents.py``).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import trio

from ..conftest import knowledge_server
from ..knowledge import documents
from .test_knowledge_routes import API, db_counts, files_under, wait_indexed

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
OUTLINE_TOPICS = [text for _, text in documents.HEADINGS]  # Gardening Guide, Soil, Watering, Morning


async def upload(client, data: bytes, filename: str, media_type: str, title: str = "Garden", **fields):
    return await client.post(f"{API}/documents", files={"file": (filename, data, media_type)},
                             data={"title": title, **fields})


async def keyword_hits(client, query: str) -> list[dict]:
    response = await client.post(f"{API}/search", json={"query": query, "method": "keyword"})
    assert response.status_code == 200, response.text
    return response.json()["data"]["hits"]


async def check_converted(server, root: Path, data: bytes, filename: str, media_type: str, fmt: str) -> None:
    response = await upload(server.client, data, filename, media_type)
    assert response.status_code == 201, response.text
    body = response.json()["data"]
    doc_id = body["doc_id"]
    assert body["source_name"] == filename and body["topic_count"] == len(OUTLINE_TOPICS)
    # The original bytes are kept as they came; the topics follow the document's headings.
    assert Path(body["original_file_path"]).read_bytes() == data
    doc = (await server.client.get(f"/api/v2/knowledge/documents/{doc_id}")).json()["data"]
    assert [t["topic_name"] for t in doc["topics"]] == OUTLINE_TOPICS
    assert doc["source_type"] == fmt  # no source_type sent: the detected format is recorded
    soil = next(t for t in doc["topics"] if t["topic_name"] == "Soil")
    topic = (await server.client.get(f"{API}/topics/{soil['topic_id']}")).json()["data"]
    assert "compost" in topic["content"]
    await wait_indexed(server.client, doc_id)
    hits = await keyword_hits(server.client, "compost")
    assert doc_id in {hit["document"]["doc_id"] for hit in hits}
    assert not any((root / ".index" / "inbox").iterdir())


async def test_a_docx_and_a_text_pdf_answer_201_with_topics_from_their_headings(root: Path) -> None:
    async with knowledge_server(root, knowledge__dedupe="none") as server:
        await check_converted(server, root, documents.outline_docx(), "garden.docx", DOCX, "docx")
        await check_converted(server, root, documents.outline_pdf(), "garden.pdf", "application/pdf", "pdf")
        health = (await server.client.get("/health")).json()
        workers = health["ingest"]["conversion_workers"]
        assert workers["workers"] == 1 and workers["alive"] == 1 and workers["killed"] == 0


async def test_a_source_type_given_is_kept(root: Path) -> None:
    async with knowledge_server(root) as server:
        response = await upload(server.client, documents.outline_pdf(), "g.pdf", "application/pdf", source_type="manual")
        assert response.status_code == 201, response.text
        doc = (await server.client.get(f"{API}/documents/{response.json()['data']['doc_id']}")).json()["data"]
        assert doc["source_type"] == "manual"


async def test_a_damaged_or_password_protected_file_is_refused_at_once_and_writes_nothing(root: Path) -> None:
    """G10: refused at accept, before any file, row or job is written."""
    protected_office = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 504 + "EncryptedPackage".encode("utf-16-le")
    damaged_zip = b"PK\x03\x04" + b"\x14\x00" * 40
    async with knowledge_server(root) as server:
        await server.client.get(f"{API}/categories")  # the taxonomy file exists before the snapshot
        before = files_under(root)
        for data, name, code, status in [(protected_office, "secret.docx", "CONVERSION_FAILED", 422),
                                         (damaged_zip, "broken.docx", "CONVERSION_FAILED", 422),
                                         (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "photo.png", "UNSUPPORTED_FORMAT", 415)]:
            response = await upload(server.client, data, name, DOCX)
            assert response.status_code == status, response.text
            assert response.json()["error"]["code"] == code, response.text
            assert files_under(root) == before and db_counts(root) == (0, 0, 0)


async def test_an_encrypted_pdf_fails_its_task_with_conversion_failed_and_stores_no_document(root: Path) -> None:
    """An encrypted PDF is found out by its conversion, in the job: the upload answers 422 with the
    task id, no document or topic exists, and the task keeps its bytes for a retry."""
    async with knowledge_server(root) as server:
        response = await upload(server.client, documents.encrypted_pdf(), "secret.pdf", "application/pdf")
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "CONVERSION_FAILED" and "password-protected PDF" in error["message"]
        task = (await server.client.get(f"{API}/tasks/{error['task_id']}")).json()["data"]
        assert task["status"] == "failed"
        assert db_counts(root)[:2] == (0, 0)
        knowledge = root / "default_app" / "default_project" / "knowledge"
        assert not [p for p in knowledge.rglob("*") if p.is_file() and p.name != ".taxonomy.md"]


async def test_a_conversion_past_its_deadline_fails_its_task_and_health_still_answers(root: Path) -> None:
    data = documents.many_pages_pdf(100_000)
    async with knowledge_server(root, ingest__conversion_timeout_seconds=0.3) as server:
        response = await server.client.post(f"{API}/documents", files={"file": ("many.pdf", data, "application/pdf")},
                                            data={"title": "Many"}, headers={"Prefer": "respond-async"})
        assert response.status_code == 202, response.text
        task_id = response.json()["data"]["task_id"]
        with trio.fail_after(30):  # liveness, not speed
            while True:
                health = await server.client.get("/health")
                assert health.status_code == 200
                task = (await server.client.get(f"{API}/tasks/{task_id}")).json()["data"]
                if task["status"] in ("failed", "dead"):
                    break
                await trio.sleep(0.05)
        assert task["status"] == "failed"  # permanent: no retry
        assert task["attempts"] == 1 and task["last_error"] == (
            "WORKER_TIMEOUT: converting 'many.pdf' did not finish within 0.3 s; its worker process was stopped"), task
        with sqlite3.connect(root / ".index" / "sqlite" / "everos.db") as conn:
            assert conn.execute("SELECT count(*) FROM knowledge_documents").fetchone()[0] == 0
        with trio.fail_after(30):
            while (await server.client.get("/health")).json()["ingest"]["conversion_workers"]["alive"] != 1:
                await trio.sleep(0.05)
        workers = (await server.client.get("/health")).json()["ingest"]["conversion_workers"]
        assert workers["killed"] == 1
        # The replaced worker converts the next upload.
        ok = await upload(server.client, documents.outline_pdf(), "next.pdf", "application/pdf")
        assert ok.status_code == 201, ok.text
