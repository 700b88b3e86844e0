"""The EverOS knowledge routes end to end, on the real server over loopback."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

import pytest
import trio

from everos.knowledge import INDEX_KEYS, TOPIC_KEYS, parse_markdown

from ..conftest import knowledge_server

API = "/api/v1/knowledge"
GUIDE = (
    "# Solar power\n\nSolar panels turn sunlight into electricity. They work best facing south.\n\n"
    "## Installation\n\nMount the panels on a sturdy roof. Connect the inverter.\n\n"
    "### Wiring\n\nUse copper cables rated for the current.\n\n"
    "## Maintenance\n\nClean the panels twice a year.\n"
).encode()


async def upload(client, data: bytes = GUIDE, title: str = "Solar guide", filename: str = "guide.md",
                 headers: dict | None = None, **fields):
    return await client.post(f"{API}/documents", files={"file": (filename, data, "text/markdown")},
                             data={"title": title, **fields}, headers=headers or {})


def files_under(root: Path) -> set[str]:
    """Every file a request could have written, outside the SQLite files and the lock."""
    skip = (".index/sqlite", ".lock")
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith(skip)}


def stored_state(root: Path) -> tuple[dict[str, str], list[tuple]]:
    """What a request could have changed: every file's digest outside the derived LanceDB index
    (which the cascade's writer keeps writing in the background), and every document, topic and
    job row in full. Take it once the documents are indexed, so the cascade is quiet."""
    skip = (".index/sqlite", ".index/lancedb", ".lock")
    files = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
             if p.is_file() and not p.relative_to(root).as_posix().startswith(skip)}
    with sqlite3.connect(root / ".index" / "sqlite" / "everos.db") as conn:
        rows = [(table, *row) for table in ("knowledge_documents", "knowledge_topics", "ingest_jobs")
                for row in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    return files, rows


async def wait_indexed(client, doc_id: str, timeout_s: float = 30) -> None:
    """Until the cascade has indexed ``doc_id`` (a liveness bound, not a speed claim)."""
    with trio.fail_after(timeout_s):
        while (await client.get(f"{API}/documents/{doc_id}")).json()["data"].get("index_status") != "indexed":
            await trio.sleep(0.05)


def db_counts(root: Path) -> tuple[int, int, int]:
    with sqlite3.connect(root / ".index" / "sqlite" / "everos.db") as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("knowledge_documents", "knowledge_topics", "ingest_jobs"))


async def test_upload_answers_201_with_the_everos_body_and_the_everos_layout(root: Path) -> None:
    async with knowledge_server(root) as server:
        response = await upload(server.client)
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        assert set(data) == {"doc_id", "category_id", "topic_count", "source_name", "md_path", "original_file_path"}
        assert data["topic_count"] == 4 and data["source_name"] == "guide.md"
        doc_dir = Path(data["md_path"])
        assert doc_dir.is_relative_to(root / "default_app" / "default_project" / "knowledge")
        assert doc_dir.name == f"Solar_guide_{data['doc_id']}"
        assert Path(data["original_file_path"]).read_bytes() == GUIDE
        names = sorted(p.name for p in doc_dir.iterdir())
        assert names == ["1_Solar_power.md", "2_Installation.md", "3_Wiring.md", "4_Maintenance.md",
                         "_original", "index.md"]
        meta, body = parse_markdown((doc_dir / "index.md").read_text())
        assert [k for k in meta if k in INDEX_KEYS] == [k for k in INDEX_KEYS if k in meta]  # EverOS order
        assert meta["type"] == "knowledge_document" and meta["doc_id"] == data["doc_id"]
        assert meta["title"] == "Solar guide" and meta["schema_version"] == 1
        meta3, body3 = parse_markdown((doc_dir / "3_Wiring.md").read_text())
        assert set(TOPIC_KEYS) <= set(meta3)
        assert meta3["id"] == meta3["node_id"] == f"{data['doc_id']}_3"
        # A lone top-level heading holds the intro; the level-2 sections sit beside it.
        assert meta3["topic_path"] == "Solar guide > Installation > Wiring"
        assert meta3["parent_node_id"] == f"{data['doc_id']}_2" and meta3["depth"] == 2
        assert "copper cables" in body3
        # No staging or inbox leftovers once the job succeeded.
        assert not any((root / ".tmp").iterdir()) if (root / ".tmp").exists() else True
        assert not any((root / ".index" / "inbox").iterdir())


async def test_documents_topics_and_categories_are_readable_at_once(root: Path) -> None:
    async with knowledge_server(root) as server:
        doc_id = (await upload(server.client)).json()["data"]["doc_id"]
        listing = (await server.client.get(f"{API}/documents")).json()["data"]
        assert listing["total"] == 1 and listing["documents"][0]["doc_id"] == doc_id
        doc = (await server.client.get(f"/api/v2/knowledge/documents/{doc_id}")).json()["data"]
        assert [t["topic_name"] for t in doc["topics"]] == ["Solar power", "Installation", "Wiring", "Maintenance"]
        topic = (await server.client.get(f"{API}/topics/{doc_id}_2")).json()["data"]
        assert topic["parent_topic_id"] is None  # EverOS: null at depth 1
        assert topic["children_topic_ids"] == [f"{doc_id}_3"]
        assert "sturdy roof" in topic["content"]
        categories = (await server.client.get(f"{API}/categories")).json()["data"]["categories"]
        assert len(categories) == 20
        assert sum(c["document_count"] for c in categories) == 1
        assert (root / "default_app" / "default_project" / "knowledge" / ".taxonomy.md").exists()


async def test_replace_patch_and_delete(root: Path) -> None:
    async with knowledge_server(root) as server:
        created = (await upload(server.client)).json()["data"]
        doc_id = created["doc_id"]
        replaced = await server.client.put(
            f"{API}/documents/{doc_id}", files={"file": ("new.md", b"# Only\n\nOne topic now.\n", "text/markdown")},
            data={"title": "Solar guide", "category_id": "Science"})
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["data"]["topic_count"] == 1
        assert not Path(created["md_path"]).exists() or created["category_id"] == "Science"
        patched = await server.client.patch(f"{API}/documents/{doc_id}",
                                            json={"title": "Sun notes", "category_id": "Engineering"})
        assert patched.status_code == 200, patched.text
        assert sorted(patched.json()["data"]["updated_fields"]) == ["category_id", "title"]
        doc = (await server.client.get(f"{API}/documents/{doc_id}")).json()["data"]
        new_dir = Path(doc["md_path"])
        assert new_dir.parent.name == "Engineering" and new_dir.name == f"Sun_notes_{doc_id}"
        meta, _ = parse_markdown((new_dir / "1_Only.md").read_text())
        assert meta["category_id"] == "Engineering" and meta["topic_path"] == "Sun notes > Only"
        assert Path(doc["original_file_path"]).read_bytes() == b"# Only\n\nOne topic now.\n"
        deleted = await server.client.delete(f"{API}/documents/{doc_id}")
        assert deleted.status_code == 200 and deleted.json()["data"] == {"doc_id": doc_id, "deleted_topics": 1}
        assert not new_dir.exists()
        assert (await server.client.get(f"{API}/documents/{doc_id}")).status_code == 404
        assert (await server.client.delete(f"{API}/documents/{doc_id}")).status_code == 204
        assert db_counts(root)[:2] == (0, 0)


async def test_delete_of_a_missing_document_answers_204_without_a_server_error(
        root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """G10: DELETE of a document that is not there answers 204 with an empty body, and the answer
    is sent cleanly (it once raised "no running event loop" inside Quart after the status line)."""
    async with knowledge_server(root) as server:
        with caplog.at_level(logging.ERROR):
            answer = await server.client.delete(f"{API}/documents/d_0123456789ab")
        assert answer.status_code == 204 and answer.content == b""
        assert (await server.client.get("/health")).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_respond_async_answers_202_and_the_task_reports_success(root: Path) -> None:
    async with knowledge_server(root) as server:
        response = await upload(server.client, headers={"Prefer": "respond-async"})
        assert response.status_code == 202
        data = response.json()["data"]
        assert response.headers["location"] == data["status_url"] == f"{API}/tasks/{data['task_id']}"
        with trio.fail_after(10):
            while True:
                task = (await server.client.get(data["status_url"])).json()["data"]
                if task["status"] == "succeeded":
                    break
                await trio.sleep(0.05)
        assert task["result"]["doc_id"] == data["doc_id"] and task["attempts"] == 1
        tasks = (await server.client.get(f"{API}/tasks", params={"status": "succeeded"})).json()["data"]["tasks"]
        assert [t["task_id"] for t in tasks] == [data["task_id"]]


async def test_same_bytes_in_the_same_scope_return_the_existing_document(root: Path) -> None:
    async with knowledge_server(root) as server:
        first = (await upload(server.client)).json()["data"]
        again = await upload(server.client, title="Another title")
        assert again.status_code == 200
        assert again.json()["data"]["doc_id"] == first["doc_id"] and again.json()["data"]["duplicate"] is True
        other_scope = await upload(server.client, app_id="other")
        assert other_scope.status_code == 201 and other_scope.json()["data"]["doc_id"] != first["doc_id"]


async def test_dedupe_none_always_creates(root: Path) -> None:
    async with knowledge_server(root, knowledge__dedupe="none") as server:
        ids = {(await upload(server.client)).json()["data"]["doc_id"] for _ in range(2)}
        assert len(ids) == 2


async def test_idempotency_key_replays_the_first_answer(root: Path) -> None:
    async with knowledge_server(root, knowledge__dedupe="none") as server:
        first = await upload(server.client, headers={"Idempotency-Key": "k-1"})
        second = await upload(server.client, headers={"Idempotency-Key": "k-1"})
        assert second.status_code == first.status_code == 201
        assert second.json()["data"] == first.json()["data"]
        assert second.headers["idempotent-replayed"] == "true"
        reused = await upload(server.client, data=b"other bytes", headers={"Idempotency-Key": "k-1"})
        assert reused.status_code == 409 and reused.json()["error"]["code"] == "CONFLICT"
        assert db_counts(root)[0] == 1


HOSTILE = [
    ("missing file", {"data": {"title": "t"}}, 422, "INVALID_INPUT", "file"),
    ("missing title", {"files": {"file": ("a.md", b"text", "text/plain")}}, 422, "INVALID_INPUT", "title"),
    ("title without a word", {"files": {"file": ("a.md", b"text", "text/plain")}, "data": {"title": "!!"}},
     422, "INVALID_INPUT", "title"),
    ("binary file", {"files": {"file": ("a.bin", b"\x00\x01\x02\xff" * 50, "application/octet-stream")},
                     "data": {"title": "t"}}, 415, "UNSUPPORTED_FORMAT", None),
    ("non-utf8", {"files": {"file": ("a.txt", "caf\u00e9 cr\u00e8me".encode("latin-1") * 10, "text/plain")},
                  "data": {"title": "t"}}, 415, "UNSUPPORTED_FORMAT", None),
    ("empty text", {"files": {"file": ("a.md", b"   \n\n ", "text/plain")}, "data": {"title": "t"}},
     422, "EXTRACTION_EMPTY", None),
    ("traversing app_id", {"files": {"file": ("a.md", b"text", "text/plain")},
                           "data": {"title": "t", "app_id": "../etc"}}, 422, "INVALID_INPUT", "app_id"),
    ("dot project_id", {"files": {"file": ("a.md", b"text", "text/plain")},
                        "data": {"title": "t", "project_id": ".."}}, 422, "INVALID_INPUT", "project_id"),
    ("traversing category", {"files": {"file": ("a.md", b"text", "text/plain")},
                             "data": {"title": "t", "category_id": "../../x"}}, 422, "INVALID_INPUT", "category_id"),
    ("unknown category", {"files": {"file": ("a.md", b"text", "text/plain")},
                          "data": {"title": "t", "category_id": "Nope"}}, 422, "INVALID_INPUT", "category_id"),
]


@pytest.mark.parametrize(("name", "request_kwargs", "status", "code", "field"), HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_bad_upload_gets_a_clear_error_and_writes_nothing(
    root: Path, name: str, request_kwargs: dict, status: int, code: str, field: str | None
) -> None:
    """G10: rejected input leaves no file, row or job behind."""
    async with knowledge_server(root) as server:
        await server.client.get(f"{API}/categories")  # the taxonomy file exists before the snapshot
        before = files_under(root)
        response = await server.client.post(f"{API}/documents", **request_kwargs)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code
        if field:
            assert error["field"] == field
        assert files_under(root) == before
        assert db_counts(root) == (0, 0, 0)


async def test_oversized_upload_is_413_and_writes_nothing(root: Path) -> None:
    async with knowledge_server(root, knowledge__max_upload_bytes=1000) as server:
        before = files_under(root)
        response = await upload(server.client, data=b"a" * 5000)
        assert response.status_code == 413 and response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        huge = await upload(server.client, data=b"a" * (3 << 20))
        assert huge.status_code == 413
        assert files_under(root) == before and db_counts(root) == (0, 0, 0)


async def test_hostile_filenames_stay_inside_the_document(root: Path) -> None:
    async with knowledge_server(root, knowledge__dedupe="none") as server:
        for name in ("../../../../etc/passwd", "/abs/path.md", "..\\..\\win.md", "a\u2215b\uff0fc.md",
                     "x" * 300 + ".md", ".."):
            response = await upload(server.client, filename=name)
            assert response.status_code == 201, (name, response.text)
            original = Path(response.json()["data"]["original_file_path"])
            assert original.parent.name == "_original"
            assert original.resolve().is_relative_to(root.resolve())
            assert len(original.name.encode()) <= 255


@pytest.mark.parametrize(("path", "status"), [
    ("/documents/not-an-id", 422), ("/documents/d_0123456789ab", 404), ("/topics/d_0123456789ab", 422),
    ("/topics/d_0123456789ab_1", 404), ("/tasks/t_0123456789ab", 404), ("/tasks/nope", 422),
    ("/documents?page=0", 422), ("/documents?page_size=101", 422), ("/documents?sort_by=evil", 422),
    ("/documents?app_id=..", 422), ("/tasks?status=weird", 422),
])
async def test_malformed_and_unknown_ids(root: Path, path: str, status: int) -> None:
    async with knowledge_server(root) as server:
        response = await server.client.get(API + path)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == ("NOT_FOUND" if status == 404 else "INVALID_INPUT")


async def test_patch_rejects_malformed_bodies(root: Path) -> None:
    """G10: a rejected PATCH leaves the document's files and rows exactly as they were.

    Was flaky (about half the runs): it compared every file under the root, and a background
    LanceDB write of the upload landed between the snapshots. Now the cascade is quiet first
    (the document indexed) and the derived index is left out; file contents and full rows count.
    """
    async with knowledge_server(root) as server:
        doc_id = (await upload(server.client)).json()["data"]["doc_id"]
        await wait_indexed(server.client, doc_id)
        before = stored_state(root)
        for body in (b"{not json", b"[1, 2]", b'{"evil": 1}', b'{"title": "!!"}', b'{"category_id": "../x"}'):
            response = await server.client.patch(f"{API}/documents/{doc_id}", content=body,
                                                 headers={"content-type": "application/json"})
            assert response.status_code == 422, (body, response.text)
        assert stored_state(root) == before


@pytest.mark.parametrize("body", [b'{"title": {}}', b'{"title": 5}', b'{"title": ["x"]}', b'{"title": true}',
                                  b'{"category_id": {}}', b'{"category_id": 5}', b'{"category_id": ["x"]}',
                                  b'{"title": "Solar \\ud800 guide"}', b'{"category_id": "Tech\\udfff"}'])
async def test_patch_with_a_non_string_or_unstorable_field_is_422_and_changes_nothing(root: Path, body: bytes) -> None:
    """G10 (issue: 500, and a lone surrogate moved the files but not the rows)."""
    async with knowledge_server(root) as server:
        doc_id = (await upload(server.client)).json()["data"]["doc_id"]
        await wait_indexed(server.client, doc_id)
        before = stored_state(root)
        response = await server.client.patch(f"{API}/documents/{doc_id}", content=body,
                                             headers={"content-type": "application/json"})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "INVALID_INPUT" and error["field"] in ("title", "category_id")
        assert stored_state(root) == before


@pytest.mark.parametrize("failing", ["stage_rewrite", "save_rewritten", "publish", "remove_old"])
async def test_a_patch_that_fails_at_any_step_leaves_files_and_rows_as_they_were(root: Path, monkeypatch,
                                                                              failing: str) -> None:
    """G10: every failure point of a PATCH that moves the document (a new title) is undone, and a
    DELETE afterwards leaves nothing behind."""
    from everos.ingest import _documents as _service  # the module whose update() runs the PATCH steps
    from everos.ingest import _edit

    def boom(*args, **kwargs):
        raise OSError(f"injected failure in {failing}")

    async with knowledge_server(root) as server:
        doc_id = (await upload(server.client)).json()["data"]["doc_id"]
        await wait_indexed(server.client, doc_id)
        before = stored_state(root)
        if failing == "remove_old":
            real = _edit.remove_tree_sync

            def remove(path, *, root=None):
                if root is not None and path.name.startswith("Solar_guide_"):
                    raise OSError("injected failure removing the old directory")
                return real(path, root=root)

            monkeypatch.setattr(_edit, "remove_tree_sync", remove)
        elif failing == "publish":
            monkeypatch.setattr(_edit, "publish_directory_sync", boom)
        else:
            monkeypatch.setattr(_service, failing, boom)
        response = await server.client.patch(f"{API}/documents/{doc_id}", json={"title": "Moved guide"})
        assert response.status_code == 500, response.text
        monkeypatch.undo()
        assert stored_state(root) == before
        assert (await server.client.get(f"{API}/documents/{doc_id}")).json()["data"]["title"] == "Solar guide"
        assert (await server.client.delete(f"{API}/documents/{doc_id}")).status_code in (200, 204)
        assert not list(root.glob("*/*/knowledge/*/*_" + doc_id))


@pytest.mark.parametrize("scope", [{"app_id": ".hidden"}, {"project_id": ".index"}, {"app_id": "..."}])
async def test_a_dot_scope_is_refused_before_anything_is_written(root: Path, scope: dict) -> None:
    """G10 (issue: 422 only after files, rows and an inbox file were written)."""
    async with knowledge_server(root) as server:
        await server.client.get(f"{API}/categories")  # the taxonomy file exists before the snapshot
        before = files_under(root)
        response = await upload(server.client, **scope)
        assert response.status_code == 422 and response.json()["error"]["field"] == next(iter(scope))
        for path in ("/documents", "/categories"):
            assert (await server.client.get(API + path, params=scope)).status_code == 422
        search = await server.client.post(f"{API}/search", json={"query": "solar", **scope})
        assert search.status_code == 422
        assert files_under(root) == before and db_counts(root) == (0, 0, 0)
