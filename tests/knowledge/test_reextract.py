"""A model that is down degrades uploads to the built-in extractor, and re-extraction brings the
model back in (#18; G1, G10, G11), against the real server and the fake model over loopback.

Real sockets and ``autojump_clock`` do not mix, so these tests use small real timeouts and never
assert on speed.
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from everos.cli import main
from everos.errors import ExitCode
from everos.testing import FakeLLM, Fault

from ..conftest import knowledge_server

API = "/api/v1/knowledge"
GUIDE = b"# Solar power\n\nSolar panels turn sunlight into electricity.\n\nClean the panels twice a year.\n"
QUIET = {"cascade__watch": False, "cascade__scan_interval_seconds": 3600, "llm__max_retries": 0,
         "llm__timeout_seconds": 3.0, "llm__circuit_cooldown_seconds": 0.2}


def llm(fake: FakeLLM, **more) -> dict:
    return {"llm__provider": "openai", "llm__base_url": fake.base_url, "llm__model": "m", **QUIET, **more}


async def upload(client, data: bytes = GUIDE, title: str = "Solar guide"):
    return await client.post(f"{API}/documents", files={"file": ("guide.md", data, "text/markdown")},
                             data={"title": title})


async def finished(client, task_id: str, timeout_s: float = 20.0) -> dict:
    """The task once it ended (a liveness bound, not a speed)."""
    with trio.fail_after(timeout_s):
        while (task := (await client.get(f"{API}/tasks/{task_id}")).json()["data"])["status"] not in (
                "succeeded", "failed", "dead"):
            await trio.sleep(0.05)
    return task


async def test_with_the_model_down_an_upload_answers_201_and_re_extraction_uses_the_model_once_it_is_back(
    fake: FakeLLM, root: Path, capsys
) -> None:
    """G11 (#18): a chat endpoint that closes every connection still gets the upload a 201 and a
    built-in topic tree; the task and the document say which extractor ran and why; once the
    model answers, ``everos reextract`` has the server extract it again (same doc_id), with the
    model. The 201 body stays EverOS's."""
    fake.set_faults([Fault.close(route="chat")])
    async with knowledge_server(root, **llm(fake)) as server:
        client = server.client
        answer = await upload(client)
        assert answer.status_code == 201, answer.text
        created = answer.json()["data"]
        assert "extractor" not in created
        doc_id = created["doc_id"]
        task = (await client.get(f"{API}/tasks/t_{doc_id[2:]}")).json()["data"]
        fallback = task["result"]["extractor"]
        assert fallback.startswith("builtin (llm fallback: llm endpoint") and "attempt" in fallback
        document = (await client.get(f"{API}/documents/{doc_id}")).json()["data"]
        assert document["extractor"] == fallback and document["topics"]

        fake.recover()
        capsys.readouterr()
        assert await trio.to_thread.run_sync(main, ["reextract", "--root", str(root)]) == ExitCode.OK
        report = json.loads(capsys.readouterr().out)
        assert [item["doc_id"] for item in report["requeued"]] == [doc_id]
        assert report["server"] == server.base_url
        task = await finished(client, report["requeued"][0]["task_id"])
        assert task["status"] == "succeeded" and task["result"]["extractor"] == "llm"
        assert task["result"]["doc_id"] == doc_id
        assert (await client.get(f"{API}/documents/{doc_id}")).json()["data"]["extractor"] == "llm"
        listed = (await client.get(f"{API}/documents")).json()["data"]
        assert [d["doc_id"] for d in listed["documents"]] == [doc_id]
        # Nothing fell back any more: nothing to re-extract.
        again = await client.post(f"{API}/reextract")
        assert again.status_code == 202 and again.json()["data"]["requeued"] == []


async def test_with_fallback_none_a_model_that_is_down_answers_503(fake: FakeLLM, root: Path) -> None:
    """G1 (#18): [llm] fallback = "none" asks for model extraction only: the upload fails with the
    model's error (503), as before there was a fallback."""
    fake.set_faults([Fault.close(route="chat")])
    overrides = llm(fake, llm__fallback="none", ingest__max_attempts=1, knowledge__sync_wait_seconds=10.0)
    async with knowledge_server(root, **overrides) as server:
        answer = await upload(server.client)
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "EXTERNAL_SERVICE_UNAVAILABLE"


async def test_reextract_rejects_bad_input_and_changes_nothing(fake: FakeLLM, root: Path) -> None:
    """G10: a body on POST /documents/{id}/reextract or /reextract, a malformed id and an unknown
    document answer 422/404 with the EverOS envelope, and no job is queued or changed."""
    async with knowledge_server(root, **llm(fake)) as server:
        client = server.client
        doc_id = (await upload(client)).json()["data"]["doc_id"]
        # The task ended and its document indexed first: until then its phase and index_status move.
        task_path = f"{API}/tasks/t_{doc_id[2:]}"
        await finished(client, f"t_{doc_id[2:]}")
        with trio.fail_after(20):
            while (before := (await client.get(task_path)).json()["data"])["index_status"] == "pending":
                await trio.sleep(0.05)
        cases = [
            (f"{API}/documents/{doc_id}/reextract", {"content": b'{"model": "other"}'}, 422, "INVALID_INPUT"),
            (f"{API}/documents/{doc_id}/reextract", {"content": b"not json"}, 422, "INVALID_INPUT"),
            (f"{API}/reextract", {"content": b"[]"}, 422, "INVALID_INPUT"),
            (f"{API}/documents/not-an-id/reextract", {}, 422, "INVALID_INPUT"),
            (f"{API}/documents/d_000000000000/reextract", {}, 404, "NOT_FOUND"),
        ]
        for path, body, status, code in cases:
            answer = await client.post(path, **body)
            assert answer.status_code == status, (path, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code and error["message"], answer.text
        after = (await client.get(task_path)).json()["data"]
        assert after == before
        assert sorted(p.name for p in (root / ".index" / "inbox").iterdir()) == []
        tasks = (await client.get(f"{API}/tasks")).json()["data"]["tasks"]
        assert [t["task_id"] for t in tasks] == [before["task_id"]]
        # A document that did not fall back can still be extracted again on purpose: same doc_id.
        again = await client.post(f"{API}/documents/{doc_id}/reextract")
        assert again.status_code == 200, again.text
        assert again.json()["data"]["doc_id"] == doc_id and "extractor" not in again.json()["data"]


def test_reextract_without_a_server_fails_in_one_line(root: Path, capsys) -> None:
    """The command talks to the server that owns the root; with none it says so (UNREACHABLE)."""
    assert main(["reextract", "--root", str(root)]) == ExitCode.UNREACHABLE
    err = capsys.readouterr().err
    assert "no everos server owns the root" in err and err.count("\n") == 1
