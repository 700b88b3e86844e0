"""Atomic facts: the LLM on the background budget, the splitter when its answer is unusable (G4, G11)."""

from __future__ import annotations

from pathlib import Path

import trio

from everos.cascade import FactExtractor, clean_facts, facts_from_answer, locate_document
from everos.cascade._facts import PASSAGE_HEADER, fact_batches, facts_by_passage
from everos.knowledge import KnowledgeTopic
from everos.providers import ProviderResponseError, ProviderTimeout

from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade, split_facts, write_document


def topic(index: int, content: str) -> KnowledgeTopic:
    return KnowledgeTopic(doc_id="d_0123456789ab", topic_index=index, topic_id=f"d_0123456789ab_{index}",
                          topic_name=f"T{index}", topic_path=f"Doc > T{index}", depth=1, summary="", content=content,
                          content_labels=(), parent_index=0, children_index=(), category_id="Others")


class FakeChat:
    """Answers a batched facts call from a script by topic name: a list of facts, a malformed
    entry ("bad"), nothing ("skip"); or for the whole call an exception to raise or "stall"
    (the script's "*" key)."""

    def __init__(self, script: dict) -> None:
        self.script = script
        self.budgets: list[str] = []
        self.calls: list[list[str]] = []

    async def complete_json(self, messages, *, budget, schema_hint=None):
        self.budgets.append(str(budget))
        names = [line.split(": ", 1)[1].rsplit("> ", 1)[-1]
                 for line in messages[-1]["content"].splitlines() if line.startswith(PASSAGE_HEADER)]
        self.calls.append(names)
        whole = self.script.get("*")
        if whole == "stall":
            await trio.sleep_forever()
        if isinstance(whole, Exception):
            raise whole
        await trio.lowlevel.checkpoint()
        passages = []
        for number, name in enumerate(names, start=1):
            answer = self.script.get(name, [f"{name} is a fact."])
            if answer == "skip":
                continue
            passages.append({"passage": number, "facts": "not a list" if answer == "bad" else answer})
        return {"passages": passages}


def test_clean_facts_strips_dedupes_and_caps() -> None:
    assert clean_facts([" a  b ", "a b", "", 3, "c", "d"], 2) == ["a b", "c"]


def test_facts_from_answer_refuses_malformed_answers() -> None:
    assert facts_from_answer({"facts": ["One.", " Two. "]}, 5) == ["One.", "Two."]
    for bad in ({"facts": "One."}, {"items": ["One."]}, {"facts": []}, {"facts": [1, None]}, ["One."]):
        assert facts_from_answer(bad, 5) is None


def test_a_models_fact_is_cut_as_the_extractions_are() -> None:
    """Found by fuzz/ (answers target, facts bounded in length): a batched answer's fact of any
    length went to the index whole, while the extraction's are cut at 500 characters."""
    long_fact = "The panel " + "works well " * 100
    (fact,) = facts_from_answer({"facts": [long_fact]}, 5)
    assert len(fact) <= 500 and fact.endswith("…") and long_fact.startswith(fact[:-1])
    assert facts_by_passage({"passages": [{"passage": 1, "facts": [long_fact]}]}, 1, 5) == {1: [fact]}


def test_facts_by_passage_keeps_only_well_formed_entries_in_range() -> None:
    """#11: a batched answer's entries by passage number; anything else is left for the splitter."""
    answer = {"passages": [{"passage": 1, "facts": ["One."]}, {"passage": 1, "facts": ["Again."]},
                           {"passage": 0, "facts": ["Out."]}, {"passage": 4, "facts": ["Out."]},
                           {"passage": True, "facts": ["Bool."]}, {"passage": "2", "facts": ["Text."]},
                           {"passage": 3, "facts": []}, "junk", {"passage": 2, "facts": [" Two. "]}]}
    assert facts_by_passage(answer, 3, 5) == {1: ["One."], 2: ["Two."]}
    for bad in ({"facts": ["One."]}, {"passages": "x"}, [], None):
        assert facts_by_passage(bad, 3, 5) == {}


def test_fact_batches_pack_by_tokens_and_count() -> None:
    """#11: passages go in order into batches within the token budget and the answer's room."""
    texts = ["a" * 400] * 5  # 100 tokens + the header each
    assert fact_batches(texts, 10_000, 2) == [[0, 1], [2, 3], [4]]
    assert fact_batches(texts, 250, 10) == [[0, 1], [2, 3], [4]]
    assert fact_batches(["a" * 4000, "b"], 250, 10) == [[0], [1]]  # a long one alone
    assert fact_batches([], 250, 10) == []


async def test_llm_facts_come_in_one_call_and_bad_entries_fall_back_to_the_splitter() -> None:
    """#11, G11: four topics, one background call; a malformed or missing entry gets the splitter's facts."""
    chat = FakeChat({"T1": ["Fact from the model."], "T2": "bad", "T3": "skip"})
    extractor = FactExtractor(split_facts, trio.CapacityLimiter(1), chat=chat, max_facts=4)
    topics = [topic(i, f"Sentence {i}. Another {i}.") for i in range(1, 5)]
    facts = await extractor.extract(topics)
    assert chat.calls == [["T1", "T2", "T3", "T4"]] and chat.budgets == ["background"]
    assert facts["d_0123456789ab_1"] == (["Fact from the model."], "llm")
    assert facts["d_0123456789ab_4"] == (["T4 is a fact."], "llm")
    for index in (2, 3):
        assert facts[f"d_0123456789ab_{index}"] == ([f"Sentence {index}.", f"Another {index}."], "splitter")


async def test_a_failed_call_gives_its_topics_the_splitters_facts() -> None:
    """G11: a provider error on the batch: every topic of it still gets facts."""
    for error in (ProviderResponseError("llm", "no JSON object"), ProviderTimeout("llm", "no answer")):
        extractor = FactExtractor(split_facts, trio.CapacityLimiter(1), chat=FakeChat({"*": error}))
        facts = await extractor.extract([topic(1, "Only this. And that."), topic(2, "")])
        assert facts["d_0123456789ab_1"] == (["Only this.", "And that."], "splitter")
        assert facts["d_0123456789ab_2"] == ([], "llm")  # nothing to ask about: no passage sent


async def test_many_topics_take_a_few_calls_within_the_context_window() -> None:
    """#11: 60 topics of ~330 tokens in an 8,192-token window: calls that fit, far fewer than topics."""
    chat = FakeChat({})
    extractor = FactExtractor(split_facts, trio.CapacityLimiter(1), chat=chat, max_facts=4, context_tokens=8192)
    topics = [topic(i, f"Sentence {i}. " * 100) for i in range(1, 61)]
    facts = await extractor.extract(topics)
    assert all(source == "llm" for _, source in facts.values()) and len(facts) == 60
    assert sorted(name for call in chat.calls for name in call) == sorted(f"T{i}" for i in range(1, 61))
    assert 1 < len(chat.calls) <= 8


async def test_a_stalled_llm_costs_at_most_the_time_budget(autojump_clock: trio.abc.Clock) -> None:
    extractor = FactExtractor(split_facts, trio.CapacityLimiter(1), chat=FakeChat({"*": "stall"}),
                              llm_time_budget_seconds=30)
    start = trio.current_time()
    facts = await extractor.extract([topic(1, "Only this. And that.")])
    assert trio.current_time() - start == 30
    assert facts["d_0123456789ab_1"] == (["Only this.", "And that."], "splitter")


async def test_cascade_indexes_llm_facts(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    """#11: with [cascade] llm_facts = "batched" the model's facts are indexed, one call per document."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    chat = FakeChat({name: [f"{name} is a Trio feature."] for name in ("Cancel scopes", "Nurseries", "Threads")})
    async with open_cascade(root, sink, embedder, chat=chat, llm_facts="batched") as cascade:
        await cascade.sync()
    assert sorted(f.text for f in sink.facts[doc_id]) == [
        "Cancel scopes is a Trio feature.", "Nurseries is a Trio feature.", "Threads is a Trio feature."]
    assert len(chat.calls) == 1


async def test_llm_facts_off_asks_the_model_nothing(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    """#11: the default, llm_facts = "off": the splitter's facts, no model call, even with a model."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    doc_id = locate_document(doc_dir).doc_id
    chat = FakeChat({})
    async with open_cascade(root, sink, embedder, chat=chat) as cascade:
        await cascade.sync()
    assert chat.calls == [] and sink.facts[doc_id]
