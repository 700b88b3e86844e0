"""A task shows where its document is and what it cost the model (issue #11 item 3)."""

from __future__ import annotations

from pathlib import Path

import trio

from everos.testing import Fault, FakeLLM

from ..conftest import knowledge_server

API = "/api/v1/knowledge"
DOCUMENT = b"# Cats\n\nCats purr when content.\n\n## Dogs\n\nDogs bark at strangers.\n"


async def test_a_task_goes_through_its_phases_and_counts_the_model_calls(root: Path, nursery) -> None:
    """Extracting (with the model's answers so far) while the model works, then indexing, then
    done with the calls and tokens of the extraction; the upload's own answer keeps EverOS's fields."""
    fake = FakeLLM([Fault.latency(1.0, route="chat")])
    await nursery.start(fake.serve, "127.0.0.1", 0)
    async with knowledge_server(root, llm__provider="openai", llm__base_url=fake.base_url, llm__model="fake") as server:
        client = server.client
        accepted = await client.post(f"{API}/documents", files={"file": ("a.md", DOCUMENT)}, data={"title": "Pets"},
                                     headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202, accepted.text
        task_url = f"{API}/tasks/{accepted.json()['data']['task_id']}"
        seen: list[str] = []
        with trio.fail_after(30):
            while True:
                task = (await client.get(task_url)).json()["data"]
                if not seen or seen[-1] != task["phase"]:
                    seen.append(task["phase"])
                if task["phase"] == "extracting":
                    assert task["model"]["calls"] == 0  # the one call is still at the model
                if task["phase"] == "done":
                    break
                await trio.sleep(0.05)
        assert "extracting" in seen and seen[-1] == "done", seen
        assert task["status"] == "succeeded" and task["index_status"] == "indexed"
        assert task["model"]["calls"] == 1 and task["model"]["prompt_tokens"] > 0
        assert task["model"]["completion_tokens"] > 0
        assert "model" not in task["result"] or task["result"]["model"] == task["model"]
        listed = (await client.get(f"{API}/tasks")).json()["data"]["tasks"]
        assert [t["phase"] for t in listed if t["task_id"] == task["task_id"]] == ["done"]
        # A synchronous upload's answer is EverOS's body: the usage stays in the task.
        again = await client.post(f"{API}/documents", files={"file": ("b.md", DOCUMENT + b"\nMore.\n")},
                                  data={"title": "Pets 2"})
        assert again.status_code == 201 and "model" not in again.json()["data"]
    nursery.cancel_scope.cancel()


async def test_a_task_without_a_model_has_phases_and_no_model_calls(root: Path) -> None:
    """The built-in extractor: the task is done with zero model calls."""
    async with knowledge_server(root) as server:
        response = await server.client.post(f"{API}/documents", files={"file": ("a.md", DOCUMENT)},
                                            data={"title": "Pets"}, headers={"Prefer": "respond-async"})
        task_id = response.json()["data"]["task_id"]
        with trio.fail_after(30):
            while (task := (await server.client.get(f"{API}/tasks/{task_id}")).json()["data"])["phase"] != "done":
                assert task["phase"] in ("queued", "reading", "extracting", "publishing", "indexing"), task
                await trio.sleep(0.05)
        assert task["model"] == {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
