"""Markdown to search, end to end: ingest, hand edits, deletes, rebuild of an EverOS root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from everos.cli import main

from .conftest import knowledge_server, write_config

API = "/api/v1/knowledge"
FIXTURE = Path(__file__).parent / "cascade" / "data" / "everos_root"


async def search(client, query: str, method: str = "keyword", **extra) -> list[dict]:
    response = await client.post(f"{API}/search", json={"query": query, "method": method, **extra})
    assert response.status_code == 200, response.text
    return response.json()["data"]["hits"]


async def wait_for(predicate, timeout_s: float = 20.0, interval_s: float = 0.1):
    """Poll an async predicate until it returns something truthy (a liveness bound, not a speed)."""
    with trio.fail_after(timeout_s):
        while not (result := await predicate()):
            await trio.sleep(interval_s)
    return result


async def test_an_upload_is_indexed_and_found_by_every_method(root: Path) -> None:
    async with knowledge_server(root, cascade__scan_interval_seconds=1) as server:
        body = b"# Volcanoes\n\nMagma rises through the crust and erupts as lava.\n\n## Tides\n\nThe moon pulls the oceans.\n"
        doc_id = (await server.client.post(f"{API}/documents", files={"file": ("v.md", body)},
                                           data={"title": "Earth notes"})).json()["data"]["doc_id"]

        async def indexed():
            doc = (await server.client.get(f"{API}/documents/{doc_id}")).json()["data"]
            return doc["index_status"] == "indexed"

        await wait_for(indexed)
        for method in ("keyword", "vector", "hybrid"):
            hits = await search(server.client, "magma lava crust", method)
            assert hits and hits[0]["topic_name"] == "Volcanoes", (method, hits)
            assert hits[0]["document"]["doc_id"] == doc_id
        hit = (await search(server.client, "moon oceans", "hybrid", include_content=True))[0]
        assert "moon pulls" in hit["content"] and hit["facts"]
        assert await search(server.client, "magma", app_id="elsewhere") == []  # scopes never leak


async def test_a_hand_edit_reaches_search_and_a_deleted_directory_leaves_it(root: Path) -> None:
    async with knowledge_server(root, cascade__scan_interval_seconds=1, cascade__watch_debounce_ms=100) as server:
        body = b"# Gardening\n\nWater the tomatoes in the morning.\n"
        created = (await server.client.post(f"{API}/documents", files={"file": ("g.md", body)},
                                            data={"title": "Garden"})).json()["data"]
        doc_dir = Path(created["md_path"])
        topic_file = next(doc_dir.glob("1_*.md"))
        await wait_for(lambda: search(server.client, "tomatoes"))
        text = topic_file.read_text().replace("Water the tomatoes", "Water the zucchini and tomatoes")
        topic_file.write_text(text)
        hits = await wait_for(lambda: search(server.client, "zucchini"))
        assert hits[0]["topic_id"] == f"{created['doc_id']}_1"
        topic = (await server.client.get(f"{API}/topics/{created['doc_id']}_1")).json()["data"]
        assert "zucchini" in topic["content"]  # SQLite follows the hand edit too

        shutil.rmtree(doc_dir)

        async def gone():
            return await search(server.client, "tomatoes") == []

        await wait_for(gone)
        assert (await server.client.get(f"{API}/documents/{created['doc_id']}")).status_code == 404


async def test_delete_through_the_api_removes_the_document_from_search(root: Path) -> None:
    async with knowledge_server(root) as server:
        doc_id = (await server.client.post(f"{API}/documents", files={"file": ("a.md", b"# Owls\n\nOwls hunt at night.\n")},
                                           data={"title": "Owls"})).json()["data"]["doc_id"]
        await wait_for(lambda: search(server.client, "owls hunt"))
        assert (await server.client.delete(f"{API}/documents/{doc_id}")).status_code == 200

        async def gone():
            return await search(server.client, "owls hunt") == []

        await wait_for(gone)


def test_rebuild_indexes_a_root_written_by_everos(tmp_path: Path, capsys) -> None:
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    write_config(tmp_path)
    assert main(["cascade", "rebuild", "--root", str(tmp_path)]) == 0
    assert '"indexed"' in capsys.readouterr().out
    assert main(["cascade", "status", "--root", str(tmp_path)]) == 0
    assert '"indexed": 3' in capsys.readouterr().out


async def test_rebuilt_everos_root_answers_searches_in_both_scopes(tmp_path: Path) -> None:
    shutil.copytree(FIXTURE, tmp_path, dirs_exist_ok=True)
    write_config(tmp_path)
    await trio.to_thread.run_sync(main, ["cascade", "rebuild", "--root", str(tmp_path)])
    async with knowledge_server(tmp_path) as server:
        hits = await search(server.client, "cancel scopes nursery")
        assert hits and hits[0]["document"]["doc_id"] == "d_3f2a9c1e7b40"
        zh = await search(server.client, "高血压 治疗", app_id="acme", project_id="handbook")
        assert zh and zh[0]["document"]["doc_id"] == "d_9b8e7d6c5a41"
        listed = (await server.client.get(f"{API}/documents")).json()["data"]
        assert {d["doc_id"] for d in listed["documents"]} >= {"d_3f2a9c1e7b40"}


@pytest.mark.slow
async def test_writing_cascade_commands_refuse_while_a_server_owns_the_root(root: Path) -> None:
    async with knowledge_server(root):
        for command in (["cascade", "sync"], ["cascade", "rebuild"], ["cascade", "fix", "--apply"]):
            code = await trio.to_thread.run_sync(main, [*command, "--root", str(root)])
            assert code == 3
        assert await trio.to_thread.run_sync(main, ["cascade", "status", "--root", str(root)]) == 0
