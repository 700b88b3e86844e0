"""The LLM extractor against the fake model server over loopback, alone and inside the real server.

Real sockets and ``autojump_clock`` do not mix, so these tests use small real timeouts and never
assert on speed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from everos.config import LLMSettings
from everos.knowledge import (
    DEFAULT_CATEGORIES,
    INDEX_KEYS,
    OTHERS_CATEGORY,
    TOPIC_KEYS,
    LLMExtractor,
    SourceDocument,
    TopicNode,
    parse_markdown,
)
from everos.knowledge._llm_batches import pack_batches, split_paragraphs
from everos.knowledge._llm_topics import InvalidAnswer, topics_from_answer
from everos.providers import ChatClient, ProviderTimeout
from everos.testing import FakeLLM, Fault

from ..conftest import knowledge_server, write_config

API = "/api/v1/knowledge"
FAST = dict(timeout_seconds=3.0, call_deadline_seconds=10.0, max_retries=1, retry_backoff_base_seconds=0.01,
            retry_backoff_max_seconds=0.05)
TEXT = (
    "# Solar power\n\nSolar panels turn sunlight into electricity.\n\n"
    "Mount the panels on a sturdy roof.\nConnect the inverter.\n\n"
    "[1]: http://example.com/wiring\n\n"  # reads like a paragraph number; must stay one paragraph
    "Use copper cables rated for the current.\n\n"
    "Clean the panels twice a year.\n"
)


def extractor(fake: FakeLLM, **overrides) -> LLMExtractor:
    settings = LLMSettings(provider="openai", base_url=fake.base_url, model="m", **{**FAST, **overrides})
    return LLMExtractor(ChatClient(settings), settings, trio.CapacityLimiter(2))


def source(text: str = TEXT, category_id: str | None = None) -> SourceDocument:
    return SourceDocument(doc_id="d_0123456789ab", title="Solar guide", text=text, category_id=category_id)


def all_content(node: TopicNode) -> list[str]:
    out = [node.content] if node.content else []
    for child in node.children:
        out.extend(all_content(child))
    return out


def chat_bodies(fake: FakeLLM) -> list[dict]:
    return [request.body for request in fake.requests if request.route == "chat"]


# -- pure parts -----------------------------------------------------------------------------------


def test_batches_respect_the_token_estimate_and_number_paragraphs_globally() -> None:
    paragraphs = [f"paragraph {i} " + "x" * 400 for i in range(10)]  # about 105 tokens each
    batches = pack_batches(paragraphs, 256)
    assert [b.first for b in batches] == [0, 2, 4, 6, 8]
    assert batches[1].prompt.startswith("[2] paragraph 2")
    assert split_paragraphs("a\n\n  \n\nb\nc\n") == ["a", "b\nc"]


def test_validation_folds_deep_topics_fills_gaps_and_rejects_bad_refs() -> None:
    paragraphs = ["p0", "p1", "p2", "p3"]
    answer = {"summary": "s", "topics": [
        {"topic": "A", "summary": "a", "block_refs": "0-1",
         "children": [{"topic": "A1", "summary": "a1", "block_refs": "1",
                       "children": [{"topic": "deep", "summary": "d", "block_refs": "3"}]}]},
    ]}
    built = topics_from_answer(answer, paragraphs, 0, max_depth=2)
    (a,) = built.topics
    (a1,) = a.children
    assert a.content == "p0" and a1.children == ()
    assert a1.content == "p1\n\np2\n\np3"  # p3 folded up from depth 3, p2 (unreferenced) joins p1's topic
    assert built.notes
    with pytest.raises(InvalidAnswer, match="outside"):
        topics_from_answer({"topics": [{"topic": "A", "block_refs": "0-9"}]}, paragraphs, 0, 5)
    with pytest.raises(InvalidAnswer, match="not a number"):
        topics_from_answer({"topics": [{"topic": "A", "block_refs": "zero"}]}, paragraphs, 0, 5)


# -- against the fake model -----------------------------------------------------------------------


async def test_extraction_covers_every_paragraph_in_some_topic(fake: FakeLLM) -> None:
    extracted = await extractor(fake).extract(source(), DEFAULT_CATEGORIES)
    contents = all_content(extracted.root)
    for paragraph in split_paragraphs(TEXT):
        assert sum(paragraph in content for content in contents) == 1, paragraph
    assert extracted.root.children and extracted.summary and extracted.language == "en"
    assert extracted.category_id in {c.id for c in DEFAULT_CATEGORIES} | {OTHERS_CATEGORY}
    # #11: one call for a document that fits the context window; the category comes in its answer
    assert len(chat_bodies(fake)) == 1


async def test_long_documents_are_extracted_in_batches_under_one_root(fake: FakeLLM) -> None:
    text = "\n\n".join(f"Paragraph {i} talks about topic {i}. " + "word " * 80 for i in range(12))
    text = "\n\n".join(f"Paragraph {i} talks about topic {i}. " + "word " * 400 for i in range(12))
    extracted = await extractor(fake, context_tokens=2048).extract(source(text, category_id="Science"),
                                                                     DEFAULT_CATEGORIES)
    assert len(chat_bodies(fake)) > 1 and extracted.category_id == "Science"  # no classification call
    assert len(all_content(extracted.root)) == 12
    assert any("batches" in note for note in extracted.notes)


async def test_a_malformed_answer_is_repaired_by_the_second_call(fake: FakeLLM) -> None:
    fake.set_faults([Fault.malformed_json(route="chat", requests={1})])
    extracted = await extractor(fake).extract(source(category_id="Science"), DEFAULT_CATEGORIES)
    bodies = chat_bodies(fake)
    assert len(bodies) == 2
    assert [m["role"] for m in bodies[1]["messages"]][-2:] == ["assistant", "user"]
    assert "invalid" in bodies[1]["messages"][-1]["content"]
    assert not any("fell back" in note for note in extracted.notes)
    assert len(all_content(extracted.root)) == len(split_paragraphs(TEXT))


async def test_malformed_twice_falls_back_to_the_builtin_extractor_with_a_note(fake: FakeLLM) -> None:
    fake.set_faults([Fault.malformed_json(route="chat", requests={1, 2})])
    extracted = await extractor(fake).extract(source(), DEFAULT_CATEGORIES)
    assert len(chat_bodies(fake)) == 2  # no classification either: the built-in one classifies
    assert extracted.notes[0].startswith("LLM extraction fell back to the built-in extractor")
    assert extracted.root.children[0].name == "Solar power"


async def test_with_fallback_none_provider_failures_propagate(fake: FakeLLM) -> None:
    """G7: with [llm] fallback = "none" (model extraction only), a model that does not answer fails
    the job (to be retried), it is not papered over."""
    fake.set_faults([Fault.stall(route="chat")])
    with pytest.raises(ProviderTimeout):
        await extractor(fake, timeout_seconds=0.2, max_retries=0, fallback="none").extract(source(),
                                                                                          DEFAULT_CATEGORIES)
    fake.recover()


async def test_a_model_that_closes_every_connection_falls_back_to_the_builtin_extractor_and_says_so(
    fake: FakeLLM,
) -> None:
    """G11 (#18): a failing chat endpoint still gives the document a topic tree: the built-in
    extractor's, with the extractor and the model's error recorded."""
    fake.set_faults([Fault.close(route="chat")])
    extracted = await extractor(fake, max_retries=0).extract(source(), DEFAULT_CATEGORIES)
    assert extracted.extractor.startswith("builtin (llm fallback: ")
    assert "llm" in extracted.extractor[len("builtin (llm fallback: "):] and extracted.extractor.endswith(")")
    assert extracted.notes[0].startswith("LLM extraction fell back to the built-in extractor")
    assert extracted.root.children[0].name == "Solar power"


async def test_a_model_that_answers_records_the_llm_extractor(fake: FakeLLM) -> None:
    extracted = await extractor(fake).extract(source(category_id="Science"), DEFAULT_CATEGORIES)
    assert extracted.extractor == "llm"


# -- inside the real server -----------------------------------------------------------------------


def layout(doc_dir: Path) -> tuple[list[str], list[str], list[set[str]]]:
    """(file names with topic names masked, index.md keys, key sets of the topic files)."""
    names = sorted(re.sub(r"^(\d+)_.+\.md$", r"\1_<Topic>.md", p.name) for p in doc_dir.iterdir())
    index_meta, _ = parse_markdown((doc_dir / "index.md").read_text())
    topic_keys = [set(parse_markdown(p.read_text())[0]) for p in sorted(doc_dir.glob("[0-9]*_*.md"))]
    return names, [k for k in index_meta if k in INDEX_KEYS], topic_keys


async def upload(client, data: bytes, title: str = "Solar guide"):
    return await client.post(f"{API}/documents", files={"file": ("guide.md", data, "text/markdown")},
                             data={"title": title})


def llm_overrides(fake: FakeLLM, **more) -> dict:
    return {"llm__provider": "openai", "llm__base_url": fake.base_url, "llm__model": "m", **more}


async def test_an_upload_with_the_llm_extractor_writes_the_builtin_layout(
    fake: FakeLLM, root: Path, tmp_path: Path
) -> None:
    data = "\n\n".join(f"Paragraph {i} about solar panels and their wiring." for i in range(4)).encode()
    builtin_root = tmp_path / "builtin"
    write_config(builtin_root)
    async with knowledge_server(builtin_root) as server:
        builtin = (await upload(server.client, data)).json()["data"]
    async with knowledge_server(root, **llm_overrides(fake)) as server:
        answer = await upload(server.client, data)
        assert answer.status_code == 201, answer.text
        llm = answer.json()["data"]
    assert set(llm) == set(builtin)
    assert llm["topic_count"] == 5  # the fake: a parent over paragraphs 0-2 with 3 children, then 3 alone
    assert len(chat_bodies(fake)) == 1  # #11: topics and category in one call
    names, index_keys, topic_keys = layout(Path(llm["md_path"]))
    builtin_names, builtin_index_keys, builtin_topic_keys = layout(Path(builtin["md_path"]))
    assert "index.md" in names and "_original" in names and (Path(llm["md_path"]) / "_original" / "guide.md").is_file()
    assert len(names) == llm["topic_count"] + 2 and set(names) >= set(builtin_names)
    assert index_keys == builtin_index_keys == [k for k in INDEX_KEYS if k in index_keys]
    assert all(set(TOPIC_KEYS) <= keys for keys in topic_keys + builtin_topic_keys)


async def test_with_the_model_stalled_an_upload_answers_202_and_health_stays_fast(fake: FakeLLM, root: Path) -> None:
    """G1/G3: a stalled model delays the document, never the answer or /health."""
    fake.set_faults([Fault.stall(route="chat")])
    overrides = llm_overrides(fake, llm__timeout_seconds=2.0, llm__max_retries=0, knowledge__sync_wait_seconds=0.5)
    async with knowledge_server(root, **overrides) as server:
        async with trio.open_nursery() as nursery:
            answers = []

            async def one() -> None:
                answers.append(await upload(server.client, b"Solar panels turn sunlight into power.\n"))

            nursery.start_soon(one)
            for _ in range(5):
                with trio.fail_after(1.0):
                    assert (await server.client.get("/health")).status_code == 200
                await trio.sleep(0.05)
        assert [a.status_code for a in answers] == [202]
        fake.recover()


async def test_topics_come_with_their_facts_and_the_category_in_one_call(fake: FakeLLM) -> None:
    """#11: facts_per_topic asks for each topic's facts in the extraction answer; the category
    comes in the same answer, so a fitting document costs exactly one chat call."""
    settings = LLMSettings(provider="openai", base_url=fake.base_url, model="m", **FAST)
    extractor_ = LLMExtractor(ChatClient(settings), settings, trio.CapacityLimiter(2), facts_per_topic=4)
    extracted = await extractor_.extract(source(), DEFAULT_CATEGORIES)
    bodies = chat_bodies(fake)
    assert len(bodies) == 1
    system = bodies[0]["messages"][0]["content"]
    assert '"facts"' in system and '"category_id"' in system
    leaves = [node for node in walk(extracted.root) if node.content]
    assert leaves and all(node.facts and len(node.facts) <= 4 for node in leaves)
    assert extracted.category_id in {c.id for c in DEFAULT_CATEGORIES} | {OTHERS_CATEGORY}


def walk(node: TopicNode) -> list[TopicNode]:
    out = [node]
    for child in node.children:
        out.extend(walk(child))
    return out
