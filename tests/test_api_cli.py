"""``everos search``, ``docs``, ``tasks`` against the real server, and the task-retry route (G10)."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
import trio

from everos.api_cli import document_outline, render_table
from everos.cli import main
from everos.errors import ExitCode, ExternalServiceUnavailable
from everos.knowledge._extractor import BuiltinExtractor

from .conftest import ingest_services, knowledge_server, running_server
from .web.test_knowledge_routes import GUIDE, upload, wait_indexed

API = "/api/v1/knowledge"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``everos ARGS`` in this process (stdout is not a terminal here): exit code, stdout, stderr."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


async def in_thread(capsys, *args: str) -> tuple[int, str, str]:
    """:func:`cli` from a trio test: the command runs its own ``trio.run`` in a thread."""
    return await trio.to_thread.run_sync(lambda: cli(capsys, *args))


# -- tables ------------------------------------------------------------------------------------------


def test_a_table_is_tab_separated_off_a_terminal_with_cells_whole() -> None:
    text = render_table(("A", "B"), [(1, None), ("x\ty z", "long " * 20)], width=None)
    assert text.splitlines() == ["A\tB", "1\t-", f"x y z\t{'long ' * 19}long"]


def test_a_table_on_a_terminal_is_aligned_and_cut_to_its_width() -> None:
    rows = [("d_1", "太阳能指南" * 10, "indexed"), ("d_22", "Solar", "failed")]
    lines = render_table(("DOC_ID", "TITLE", "INDEX"), rows, width=40).splitlines()
    assert lines[0].startswith("DOC_ID  TITLE")
    assert all(len(line.encode("utf-16-le")) // 2 <= 40 or "…" in line for line in lines)
    assert "…" in lines[1] and lines[2].startswith("d_22    Solar")
    assert lines[1].endswith("indexed") and lines[2].endswith("failed")


def test_the_outline_shows_the_index_state_and_the_topic_tree() -> None:
    text = document_outline({"title": "Solar guide", "doc_id": "d_1", "category_id": "Environment",
                             "index_status": "failed", "index_error": "1_Wiring.md: no frontmatter",
                             "topics": [{"topic_name": "Solar power", "depth": 1},
                                        {"topic_name": "Wiring", "depth": 2}]})
    assert "index_status: failed" in text and "index_error:  1_Wiring.md: no frontmatter" in text
    assert text.endswith("topics (2):\n  Solar power\n    Wiring")


# -- search, docs, tasks against the full server ---------------------------------------------------


async def test_search_docs_and_tasks_answer_from_the_server_that_owns_the_root(root: Path, capsys) -> None:
    async with knowledge_server(root) as server:
        doc_id = (await upload(server.client)).json()["data"]["doc_id"]
        await wait_indexed(server.client, doc_id)
        code, out, _ = await in_thread(capsys, "search", "copper", "cables", "--method", "keyword", "--root",
                                       str(root))
        header, first, *_ = out.splitlines()
        assert code == 0 and header == "RANK\tSCORE\tTOPIC\tPATH\tDOCUMENT\tBEST FACT"
        rank, score, topic, path, title, fact = first.split("\t")
        assert (rank, topic, title) == ("1", "Wiring", "Solar guide") and path.endswith("Wiring")
        assert float(score) > 0 and "copper" in fact.lower()

        code, out, _ = await in_thread(capsys, "search", "copper", "--json", "--top-k", "1", "--url", server.base_url)
        assert code == 0 and [hit["topic_name"] for hit in json.loads(out)["hits"]] == ["Wiring"]

        code, out, _ = await in_thread(capsys, "docs", "list", "--root", str(root))
        assert code == 0 and out.splitlines()[1].split("\t")[:2] == [doc_id, "Solar guide"]
        assert out.splitlines()[1].split("\t")[4] == "indexed"
        code, out, _ = await in_thread(capsys, "docs", "list", "--category", "Others", "--json", "--root", str(root))
        assert code == 0 and json.loads(out)["documents"] == []

        code, out, _ = await in_thread(capsys, "docs", "show", doc_id, "--root", str(root))
        assert code == 0 and "title:        Solar guide" in out and "index_status: indexed" in out
        assert "topics (4):\n  Solar power\n  Installation\n    Wiring\n  Maintenance\n" in out

        code, out, _ = await in_thread(capsys, "tasks", "--root", str(root))
        assert code == 0 and out.splitlines()[1].split("\t")[1:4] == [doc_id, "succeeded", "1/3"]
        code, out, _ = await in_thread(capsys, "tasks", "--dead", "--json", "--root", str(root))
        assert code == 0 and json.loads(out) == {"tasks": []}


async def test_docs_rm_asks_on_a_terminal_and_refuses_without_yes_off_one(root: Path, capsys, monkeypatch) -> None:
    async with knowledge_server(root) as server:
        doc_id = (await upload(server.client)).json()["data"]["doc_id"]
        code, _, err = await in_thread(capsys, "docs", "rm", doc_id, "--root", str(root))
        assert code == ExitCode.USAGE and "without --yes" in err and len(err.splitlines()) == 1
        monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
        prompts: list[str] = []
        monkeypatch.setattr("builtins.input", lambda prompt: prompts.append(prompt) or "n")
        code, out, _ = await in_thread(capsys, "docs", "rm", doc_id, "--root", str(root))
        assert code == 0 and out == f"kept {doc_id}\n"
        assert prompts == [f"delete 'Solar guide' ({doc_id}), its 4 topics and its files? [y/N] "]
        assert (await server.client.get(f"{API}/documents/{doc_id}")).status_code == 200
        monkeypatch.setattr("builtins.input", lambda prompt: "yes")
        code, out, _ = await in_thread(capsys, "docs", "rm", doc_id, "--root", str(root))
        assert code == 0 and out == f"deleted {doc_id} (4 topics)\n"
        assert (await server.client.get(f"{API}/documents/{doc_id}")).status_code == 404
        code, _, err = await in_thread(capsys, "docs", "rm", doc_id, "--yes", "--root", str(root))
        assert code == ExitCode.NOT_FOUND and err.startswith("everos: 404 NOT_FOUND: ")


def test_without_a_server_the_commands_say_so_in_one_line(root: Path, capsys) -> None:
    for args in (["search", "x"], ["docs", "list"], ["tasks", "--dead"]):
        code, _, err = cli(capsys, *args, "--root", str(root))
        assert code == ExitCode.UNREACHABLE and err.count("\n") == 1 and "no everos server owns the root" in err
    code, _, err = cli(capsys, "tasks", "retry", "--root", str(root))
    assert code == ExitCode.USAGE and "needs a TASK_ID" in err


# -- the retry route and `tasks retry` -------------------------------------------------------------


class BrokenExtractor:
    """The built-in extractor behind a switch: ``mode`` "fail" fails every attempt (retryably),
    "stall" never answers, "work" extracts."""

    def __init__(self) -> None:
        self.mode = "fail"
        self._extractor = BuiltinExtractor(trio.CapacityLimiter(1))

    async def extract(self, source, categories):
        if self.mode == "fail":
            raise ExternalServiceUnavailable("the model is down")
        if self.mode == "stall":
            await trio.sleep_forever()
        return await self._extractor.extract(source, categories)


def broken_server(root: Path, extractor: BrokenExtractor, **overrides):
    """Ingest only, one attempt per job: a failing job is dead at once."""
    return running_server(root, services=ingest_services(lambda runtime: extractor),
                          ingest__max_attempts=1, ingest__workers=1, **overrides)


async def dead_task(client) -> dict:
    task_url = (await upload(client, headers={"Prefer": "respond-async"})).json()["data"]["status_url"]
    with trio.fail_after(10):
        while (task := (await client.get(task_url)).json()["data"])["status"] != "dead":
            await trio.sleep(0.05)
    return task


def job_rows(root: Path) -> list[tuple]:
    with sqlite3.connect(root / ".index" / "sqlite" / "everos.db") as conn:
        return conn.execute("SELECT * FROM ingest_jobs ORDER BY rowid").fetchall()


async def test_retry_requeues_a_dead_task_which_then_succeeds(root: Path) -> None:
    extractor = BrokenExtractor()
    async with broken_server(root, extractor) as server:
        task = await dead_task(server.client)
        assert task["last_error"] == "EXTERNAL_SERVICE_UNAVAILABLE: the model is down"
        extractor.mode = "work"
        retried = await server.client.post(f"/api/v2/knowledge/tasks/{task['task_id']}/retry")
        assert retried.status_code == 200
        body = retried.json()["data"]
        # A worker may lease the re-queued job before the answer is read: fresh attempts, at most
        # the one now running.
        assert (body["task_id"], body["last_error"]) == (task["task_id"], None) and body["attempts"] <= 1
        assert body["status"] in ("queued", "running", "succeeded")
        with trio.fail_after(10):
            while (await server.client.get(task["status_url"])).json()["data"]["status"] != "succeeded":
                await trio.sleep(0.05)
        assert (await server.client.get(f"{API}/documents/{task['doc_id']}")).status_code == 200


@pytest.mark.parametrize("path, body, status, code", [
    ("t_xyz", None, 422, "INVALID_INPUT"),
    ("t_" + "0" * 24, None, 404, "NOT_FOUND"),
    ("{succeeded}", None, 409, "CONFLICT"),
    ("{dead}", {"force": True}, 422, "INVALID_INPUT"),
])
async def test_a_refused_retry_answers_its_status_and_writes_nothing(root: Path, path, body, status, code) -> None:
    """G10: a malformed id (422), an unknown task (404), a task that is not dead or failed (409)
    and a body with fields (422) change no row."""
    extractor = BrokenExtractor()
    async with broken_server(root, extractor) as server:
        dead = await dead_task(server.client)
        extractor.mode = "work"
        created = await upload(server.client, data=GUIDE.replace(b"twice", b"three times"), title="Other")
        succeeded = (await server.client.get(f"{API}/tasks", params={"status": "succeeded"})).json()["data"]["tasks"]
        assert created.status_code == 201 and len(succeeded) == 1
        task_id = path.format(succeeded=succeeded[0]["task_id"], dead=dead["task_id"])
        before = await trio.to_thread.run_sync(job_rows, root)
        answer = await server.client.post(f"{API}/tasks/{task_id}/retry", json=body)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
        assert await trio.to_thread.run_sync(job_rows, root) == before


async def test_a_retry_into_a_full_queue_answers_429_and_writes_nothing(root: Path) -> None:
    """G9: a retried job counts against ``[ingest] max_pending`` like an upload."""
    extractor = BrokenExtractor()
    async with broken_server(root, extractor, ingest__max_pending=1) as server:
        dead = await dead_task(server.client)
        extractor.mode = "stall"
        other = await upload(server.client, data=b"# Other\n\nAnother text.\n", title="Other",
                             headers={"Prefer": "respond-async"})
        assert other.status_code == 202
        # Snapshot once a worker holds the other job (stalled there): a lease taken between the
        # snapshots would look like a write.
        with trio.fail_after(10):
            while (await server.client.get(other.json()["data"]["status_url"])).json()["data"]["status"] != "running":
                await trio.sleep(0.05)
        before = await trio.to_thread.run_sync(job_rows, root)
        answer = await server.client.post(f"{API}/tasks/{dead['task_id']}/retry")
        assert answer.status_code == 429 and answer.json()["error"]["code"] == "QUEUE_SATURATED"
        assert int(answer.headers["retry-after"]) >= 1
        assert await trio.to_thread.run_sync(job_rows, root) == before


async def test_tasks_dead_lists_the_error_and_tasks_retry_queues_it_again(root: Path, capsys) -> None:
    extractor = BrokenExtractor()
    async with broken_server(root, extractor) as server:
        task = await dead_task(server.client)
        code, out, _ = await in_thread(capsys, "tasks", "--dead", "--root", str(root))
        [row] = out.splitlines()[1:]
        assert code == 0 and row.split("\t")[:4] == [task["task_id"], task["doc_id"], "dead", "1/1"]
        assert row.endswith("EXTERNAL_SERVICE_UNAVAILABLE: the model is down")
        extractor.mode = "stall"  # the retried attempt stays running: a second retry is refused
        code, out, _ = await in_thread(capsys, "tasks", "retry", task["task_id"], "--root", str(root))
        assert code == 0 and out.startswith(f"queued {task['task_id']} again (document {task['doc_id']}")
        code, _, err = await in_thread(capsys, "tasks", "retry", task["task_id"], "--root", str(root))
        assert code == ExitCode.USAGE and err.startswith("everos: 409 CONFLICT: ") and err.count("\n") == 1
        code, out, _ = await in_thread(capsys, "tasks", "show", task["task_id"], "--json", "--root", str(root))
        assert code == 0 and json.loads(out)["status"] in ("queued", "running")
