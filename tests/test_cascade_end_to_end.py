"""Markdown to search, end to end: ingest, hand edits, deletes, rebuild of an EverOS root, and
failed documents seen and fixed through the API, /health and the CLI next to a running server."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import trio

from everos.cascade import locate_document
from everos.cli import main
from everos.errors import ExitCode
from everos.rootlock import hold_root_lock

from .cascade.conftest import GUIDE, write_document
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
    out, err = capsys.readouterr()
    report = json.loads(out)  # stdout is the report alone; the progress goes to stderr
    # the third document has no topic files: nothing for the index ("unchanged")
    assert report["outcomes"] == {"indexed": 2, "unchanged": 1} and len(report["queued"]) == 3
    assert report["failures"] == []
    # stderr is no terminal here: plain lines, no bar
    assert "everos cascade rebuild: 3/3 documents (100%)" in err and "\r" not in err
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
        for command in (["cascade", "sync"], ["cascade", "rebuild"]):
            code = await trio.to_thread.run_sync(main, [*command, "--root", str(root)])
            assert code == 3
        assert await trio.to_thread.run_sync(main, ["cascade", "status", "--root", str(root)]) == 0


# -- failed documents: visible and fixable next to a running server --------------------------------

# A server that re-queues nothing by itself once started: only `cascade fix --apply` can.
QUIET_CASCADE = {"cascade__watch": False, "cascade__scan_interval_seconds": 3600}


def broken_document(root: Path) -> tuple[str, str, Path, str]:
    """A document indexed by ``cascade sync``, then one of its topic files hand-edited without its
    frontmatter. Returns its directory, doc id, the broken file and the file's good text."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    assert main(["cascade", "sync", "--root", str(root)]) == 0
    topic = root / doc_dir / "1_Cancel_scopes.md"
    good = topic.read_text()
    topic.write_text("# Cancel scopes\n\nEdited by hand: the frontmatter is gone.\n")
    return doc_dir, locate_document(doc_dir).doc_id, topic, good


def cli_report(capsys, *args: str) -> dict:
    """Run ``everos cascade ARGS``; its JSON report. ``status`` exits CHECK_FAILED exactly when it
    reports unhealthy (a watchdog reads the exit code); everything else here exits 0."""
    capsys.readouterr()
    code = main(["cascade", *args])
    report = json.loads(capsys.readouterr().out)
    unhealthy = args[0] == "status" and not report["healthy"]
    assert code == (ExitCode.CHECK_FAILED if unhealthy else ExitCode.OK)
    return report


async def test_a_topic_file_without_frontmatter_shows_its_error_and_is_fixed_through_the_server(
    root: Path, capsys
) -> None:
    """G7: a failed document's last error is visible in GET /documents/{id} and the list, in
    /health's cascade block and in ``cascade status`` (unhealthy); ``cascade fix`` lists it next to
    the running server, and ``cascade fix --apply`` has that server queue it again, so the fixed
    file gets indexed."""
    doc_dir, doc_id, topic, good = await trio.to_thread.run_sync(broken_document, root)
    async with knowledge_server(root, **QUIET_CASCADE) as server:
        client = server.client

        async def document(status: str):
            doc = (await client.get(f"{API}/documents/{doc_id}")).json()["data"]
            return doc if doc["index_status"] == status else None

        doc = await wait_for(lambda: document("failed"))
        error = doc["index_error"]
        assert "1_Cancel_scopes.md" in error and "frontmatter" in error
        [item] = (await client.get(f"{API}/documents")).json()["data"]["documents"]
        assert (item["index_status"], item["index_error"]) == ("failed", error)

        async def health_block():
            block = (await client.get("/health")).json()["cascade"]
            return block if block["recent_failures"] else None

        block = await wait_for(health_block)
        assert not block["healthy"] and block["failed"] == 1 and block["index_status"]["failed"] == 1
        assert [(f["doc_id"], f["doc_dir"], f["error"]) for f in block["recent_failures"]] == [(doc_id, doc_dir, error)]

        status = await trio.to_thread.run_sync(cli_report, capsys, "status", "--root", str(root))
        assert not status["healthy"] and status["recent_failures"][0]["error"] == error
        assert any("1_Cancel_scopes.md" in reason for reason in status["reasons"])
        listed = await trio.to_thread.run_sync(cli_report, capsys, "fix", "--root", str(root))
        assert [(r["doc_dir"], r["status"]) for r in listed["rows"]] == [(doc_dir, "failed")]
        assert "frontmatter" in listed["rows"][0]["last_error"] and "requeued" not in listed

        topic.write_text(good)
        await trio.sleep(0.5)
        assert await document("failed")  # no watcher, no scan: nothing but the fix queues it again
        report = await trio.to_thread.run_sync(cli_report, capsys, "fix", "--apply", "--root", str(root))
        assert report["requeued"] == 1 and report["server"] == server.base_url
        assert (await wait_for(lambda: document("indexed")))["index_error"] is None

        async def healthy_block():
            block = (await client.get("/health")).json()["cascade"]
            return block if block["healthy"] else None

        assert (await wait_for(healthy_block))["recent_failures"] == []


async def test_cascade_routes_reject_bad_input_and_change_nothing(root: Path) -> None:
    """G10: a malformed or unknown-field body for POST /cascade/fix answers 422 with the EverOS
    envelope and queues nothing; GET /cascade/status and a plain POST /cascade/fix only read."""
    doc_dir, doc_id, _, _ = await trio.to_thread.run_sync(broken_document, root)
    async with knowledge_server(root, **QUIET_CASCADE) as server:
        client = server.client

        async def status() -> dict:
            response = await client.get("/api/v1/cascade/status")
            assert response.status_code == 200, response.text
            return response.json()["data"]

        before = await wait_for(lambda: _failed_status(status))
        for body in (b"{not json", b"[]", b'"apply"', b'{"apply": true, "force": true}', b'{"apply": "yes"}'):
            response = await client.post("/api/v1/cascade/fix", content=body,
                                         headers={"content-type": "application/json"})
            assert response.status_code == 422, (body, response.text)
            envelope = response.json()
            assert envelope["error"]["code"] == "INVALID_INPUT" and envelope["request_id"]
        for path in ("/api/v1/cascade/fix", "/api/v2/cascade/fix"):
            listed = (await client.post(path)).json()["data"]
            assert [r["doc_dir"] for r in listed["rows"]] == [doc_dir] and "requeued" not in listed
        after = await status()
        assert (after["depth"], after["recent_failures"]) == (before["depth"], before["recent_failures"])
        v2 = (await client.get("/api/v2/cascade/status")).json()["data"]
        assert v2["recent_failures"][0]["doc_id"] == doc_id


async def _failed_status(status) -> dict | None:
    report = await status()
    return report if report["index_status"]["failed"] else None


def test_status_and_fix_apply_without_a_server(root: Path, capsys) -> None:
    """G7: with no server, ``cascade status`` is unhealthy and names the failed file and its error,
    and ``cascade fix --apply`` indexes the fixed document here, as before."""
    doc_dir, _, topic, good = broken_document(root)
    assert cli_report(capsys, "sync", "--root", str(root))["failures"]
    status = cli_report(capsys, "status", "--root", str(root))
    assert not status["healthy"] and status["dead"] == 0 and status["index_status"]["failed"] == 1
    [failure] = status["recent_failures"]
    assert failure["doc_dir"] == doc_dir and "1_Cancel_scopes.md" in failure["error"]
    topic.write_text(good)
    report = cli_report(capsys, "fix", "--apply", "--root", str(root))
    assert report["requeued"] == 1 and report["failures"] == [] and "server" not in report
    status = cli_report(capsys, "status", "--root", str(root))
    assert status["healthy"] and status["recent_failures"] == [] and status["index_status"]["failed"] == 0


def test_fix_apply_next_to_an_owner_without_http_fails_naming_it(root: Path, capsys) -> None:
    """G1: ``cascade fix --apply`` while a process that serves no HTTP owns the root fails at once
    with one line naming it (exit UNREACHABLE); listing still works next to it."""
    with hold_root_lock(root, purpose="cascade sync"):
        assert cli_report(capsys, "fix", "--root", str(root)) == {"rows": []}
        assert main(["cascade", "fix", "--apply", "--root", str(root)]) == ExitCode.UNREACHABLE
        err = capsys.readouterr().err
        assert "cascade sync" in err and "serves no HTTP" in err and err.count("\n") == 1


def test_fix_apply_with_an_owner_that_does_not_answer_fails_with_a_clear_error(root: Path, capsys) -> None:
    """G1: the owner recorded a URL nobody answers on: the command ends with UNREACHABLE and says
    where it tried, instead of waiting."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with hold_root_lock(root, purpose="everos server") as lock:
        lock.record([url])
        assert main(["cascade", "fix", "--apply", "--root", str(root)]) == ExitCode.UNREACHABLE
        err = capsys.readouterr().err
        assert url in err and "did not take the fix" in err
