"""Atomic facts: the LLM on the background budget, the splitter when its answer is unusable (G4, G11)."""

from __future__ import annotations

from pathlib import Path

import trio

from everos.cascade import FactExtractor, clean_facts, facts_from_answer, locate_document
from everos.knowledge import KnowledgeTopic
from everos.providers import ProviderResponseError, ProviderTimeout

from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade, split_facts, write_document


def topic(index: int, content: str) -> KnowledgeTopic:
    return KnowledgeTopic(doc_id="d_0123456789ab", topic_index=index, topic_id=f"d_0123456789ab_{index}",
                          topic_name=f"T{index}", topic_path=f"Doc > T{index}", depth=1, summary="", content=content,
                          content_labels=(), parent_index=0, children_index=(), category_id="Others")


class FakeChat:
    """Answers per topic name from a script: a dict, an exception to raise, or "stall"."""

    def __init__(self, script: dict) -> None:
        self.script = script
        self.budgets: list[str] = []

    async def complete_json(self, messages, *, budget, schema_hint=None):
        self.budgets.append(str(budget))
        name = messages[-1]["content"].split("\n", 1)[0].rsplit("> ", 1)[-1]
        answer = self.script[name]
        if answer == "stall":
            await trio.sleep_forever()
        if isinstance(answer, Exception):
            raise answer
        await trio.lowlevel.checkpoint()
        return answer


def test_clean_facts_strips_dedupes_and_caps() -> None:
    assert clean_facts([" a  b ", "a b", "", 3, "c", "d"], 2) == ["a b", "c"]


def test_facts_from_answer_refuses_malformed_answers() -> None:
    assert facts_from_answer({"facts": ["One.", " Two. "]}, 5) == ["One.", "Two."]
    for bad in ({"facts": "One."}, {"items": ["One."]}, {"facts": []}, {"facts": [1, None]}, ["One."]):
        assert facts_from_answer(bad, 5) is None


async def test_llm_facts_are_used_and_bad_answers_fall_back_to_the_splitter() -> None:
    chat = FakeChat({
        "T1": {"facts": ["Fact from the model."]},
        "T2": {"facts": "not a list"},
        "T3": ProviderResponseError("llm", "no JSON object"),
        "T4": ProviderTimeout("llm", "no answer"),
    })
    extractor = FactExtractor(split_facts, trio.CapacityLimiter(1), chat=chat, max_facts=4)
    topics = [topic(i, f"Sentence {i}. Another {i}.") for i in range(1, 5)]
    facts = await extractor.extract(topics)
    assert facts["d_0123456789ab_1"] == (["Fact from the model."], "llm")
    for index in (2, 3, 4):
        assert facts[f"d_0123456789ab_{index}"] == ([f"Sentence {index}.", f"Another {index}."], "splitter")
    assert set(chat.budgets) == {"background"}


async def test_a_stalled_llm_costs_at_most_the_time_budget(autojump_clock: trio.abc.Clock) -> None:
    extractor = FactExtractor(split_facts, trio.CapacityLimiter(1), chat=FakeChat({"T1": "stall"}),
                              llm_time_budget_seconds=30)
    start = trio.current_time()
    facts = await extractor.extract([topic(1, "Only this. And that.")])
    assert trio.current_time() - start == 30
    assert facts["d_0123456789ab_1"] == (["Only this.", "And that."], "splitter")


async def test_cascade_indexes_llm_facts(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    chat = FakeChat({name: {"facts": [f"{name} is a Trio feature."]}
                     for name in ("Cancel scopes", "Nurseries", "Threads")})
    async with open_cascade(root, sink, embedder, chat=chat) as cascade:
        await cascade.sync()
    assert sorted(f.text for f in sink.facts[doc_id]) == [
        "Cancel scopes is a Trio feature.", "Nurseries is a Trio feature.", "Threads is a Trio feature."]
