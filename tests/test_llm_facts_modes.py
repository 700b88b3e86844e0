"""Who writes the atomic facts, and what it costs the model (issue #11 item 2): the real server,
the fake model over loopback, one upload per `[cascade] llm_facts` mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from everos.cascade import _state as state
from everos.testing import FakeLLM

from .conftest import knowledge_server

API = "/api/v1/knowledge"
DOCUMENT = "".join(f"## Part {n}\n\nThe part {n} explains item {n}. It also names tool {n}.\n\n"
                   for n in range(1, 5)).encode()


async def _indexed(client, doc_id: str) -> None:
    with trio.fail_after(30):
        while (await client.get(f"{API}/documents/{doc_id}")).json()["data"].get("index_status") != "indexed":
            await trio.sleep(0.05)


@pytest.mark.parametrize(("mode", "chat_calls", "source"), [
    ("off", 1, "splitter"),              # the default: extraction only, the splitter's facts
    ("with-extraction", 1, "llm"),       # the facts come in the extraction answer: no second call
    ("batched", 2, "llm"),               # one facts call for all the document's topics
])
async def test_each_facts_mode_costs_its_calls_and_indexes_facts(root: Path, nursery, mode: str, chat_calls: int,
                                                                 source: str) -> None:
    fake = FakeLLM()
    await nursery.start(fake.serve, "127.0.0.1", 0)
    async with knowledge_server(root, llm__provider="openai", llm__base_url=fake.base_url, llm__model="fake",
                                cascade__llm_facts=mode) as server:
        response = await server.client.post(f"{API}/documents", files={"file": ("doc.md", DOCUMENT)},
                                            data={"title": "Parts"})
        assert response.status_code == 201, response.text
        doc_id = response.json()["data"]["doc_id"]
        await _indexed(server.client, doc_id)
        cached = await server.services.cascade.db.read(state.load_cache, doc_id)
    assert fake.metrics()["requests"]["chat"] == chat_calls
    assert cached and {entry.facts_source for entry in cached.values()} == {source}
    assert sum(len(entry.facts) for entry in cached.values()) >= 4
    nursery.cancel_scope.cancel()
