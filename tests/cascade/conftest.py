"""Fakes and fixtures of the cascade tests: an in-memory index sink, a counting embedder, simple
stand-ins for the tokenizer and the fact splitter, documents written in the real on-disk format,
and a cascade service opened on a temporary root (no server)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from everos.cascade import CascadeService
from everos.config import CascadeSettings, Config
from everos.knowledge import DEFAULT_CATEGORIES, document_dir, extract_structure, new_doc_id, render_document_files
from everos.status import StatusBoard
from everos.store._index_rows import FactRow, IndexedVectors, TopicRow

DATA = Path(__file__).parent / "data"


class FakeSink:
    """The index, in memory: exactly what IndexSink promises, plus counters and scripted faults."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, TopicRow]] = {}
        self.facts: dict[str, list[FactRow]] = {}
        self.replaced: list[str] = []  # doc ids, one per committed replace_document
        self.deleted: list[str] = []
        self.vector_reads: list[str] = []  # doc ids, one per indexed_vectors call
        self.fail_replace: int = 0  # the next N replace_document calls raise
        self.hang_replace = False
        self.crash_after_commit: set[str] = set()  # doc ids whose replace commits, then "crashes"

    async def replace_document(self, doc_id: str, topics: list[TopicRow], facts: list[FactRow]) -> None:
        await trio.lowlevel.checkpoint()
        if self.hang_replace:
            await trio.sleep_forever()
        if self.fail_replace:
            self.fail_replace -= 1
            raise OSError("index unavailable")
        self.topics[doc_id] = {row.id: row for row in topics}
        self.facts[doc_id] = list(facts)
        self.replaced.append(doc_id)
        if doc_id in self.crash_after_commit:
            self.crash_after_commit.discard(doc_id)
            raise Crash(doc_id)

    async def delete_document(self, doc_id: str) -> int:
        await trio.lowlevel.checkpoint()
        self.deleted.append(doc_id)
        self.facts.pop(doc_id, None)
        return len(self.topics.pop(doc_id, {}))

    async def topic_hashes(self, doc_id: str) -> dict[str, str]:
        await trio.lowlevel.checkpoint()
        return {row.id: row.content_sha256 for row in self.topics.get(doc_id, {}).values()}

    async def indexed_vectors(self, doc_id: str) -> dict[str, IndexedVectors]:
        await trio.lowlevel.checkpoint()
        self.vector_reads.append(doc_id)
        facts: dict[str, list[FactRow]] = {}
        for fact in sorted(self.facts.get(doc_id, []), key=lambda f: f.fact_index):
            facts.setdefault(fact.topic_id, []).append(fact)
        return {row.id: IndexedVectors(row.content_sha256, row.vector, tuple(f.vector for f in facts.get(row.id, [])))
                for row in self.topics.get(doc_id, {}).values()}

    def topic_names(self, doc_id: str) -> list[str]:
        return sorted(row.topic_name for row in self.topics.get(doc_id, {}).values())


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing inside the cascade catches it."""


class FakeEmbedder:
    """Deterministic 8-float vectors; counts every text it embeds."""

    dim = 8
    model = "fake"

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.budgets: list[str] = []

    async def embed(self, texts, *, budget, purpose="passage"):
        await trio.lowlevel.checkpoint()
        self.texts.extend(texts)
        self.budgets.append(str(budget))
        return [[b / 255 for b in hashlib.sha256(t.encode()).digest()[:8]] for t in texts]

    async def aclose(self) -> None:
        pass


def search_tokens(text: str) -> list[str]:
    return text.lower().split()


def split_facts(text: str, max_facts: int) -> list[str]:
    return [part.strip() + "." for part in text.split(".") if part.strip()][:max_facts]


def write_document(
    root: Path, title: str, text: str, *, doc_id: str | None = None, category: str = "Technology",
    app_id: str = "default", project_id: str = "default",
) -> str:
    """Write a document as ingest would (built-in extractor, EverOS format); return its directory
    relative to the root."""
    doc_id = doc_id or new_doc_id()
    extracted = extract_structure(text, title, DEFAULT_CATEGORIES, category_id=category)
    path = document_dir(root, app_id, project_id, category, title, doc_id)
    path.mkdir(parents=True)
    for name, content in render_document_files(doc_id, title, extracted, source_name="source.md").items():
        (path / name).write_text(content, encoding="utf-8")
    (path / "_original").mkdir()
    (path / "_original" / "source.md").write_text(text, encoding="utf-8")
    return path.relative_to(root).as_posix()


GUIDE = """# Trio guide

## Cancel scopes
A cancel scope bounds the work inside it. Deadlines cancel the whole subtree.

## Nurseries
A nursery owns its child tasks. The parent waits for every child.

## Threads
Blocking work runs in worker threads. A thread cannot be cancelled.
"""


def make_runtime(root: Path, *, ingest: dict[str, Any] | None = None, **cascade: Any) -> SimpleNamespace:
    """What a service's open() reads from the runtime, with cascade (and ``ingest``) settings overridden."""
    config = dataclasses.replace(Config(), cascade=dataclasses.replace(CascadeSettings(), **cascade))
    config = dataclasses.replace(config, ingest=dataclasses.replace(config.ingest, **(ingest or {})))
    limiters = SimpleNamespace(sqlite=trio.CapacityLimiter(4), files=trio.CapacityLimiter(4),
                               cpu=trio.CapacityLimiter(2), lancedb=trio.CapacityLimiter(2))
    return SimpleNamespace(loaded=SimpleNamespace(root=root), config=config, limiters=limiters, board=StatusBoard())


@contextlib.asynccontextmanager
async def open_cascade(
    root: Path, sink: FakeSink, embedder: FakeEmbedder, *, chat: Any = None,
    clock: Callable[[], float] | None = None, document_lock: Any = None, cpu_workers: Any = None,
    tokenize: Callable[[str], list[str]] = search_tokens, ingest: dict[str, Any] | None = None, **cascade: Any,
) -> AsyncIterator[CascadeService]:
    extra = {"clock": clock} if clock else {}
    if document_lock is not None:
        extra["document_lock"] = document_lock
    service = CascadeService(sink=sink, embedder=embedder, search_tokens=tokenize, split_facts=split_facts,
                             chat=chat, cpu_workers=cpu_workers, **extra)
    await service.open(make_runtime(root, ingest=ingest, **cascade))
    try:
        yield service
    finally:
        await service.aclose()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def everos_root(tmp_path: Path) -> Path:
    """A copy of a root written by EverOS 1.x (tests/cascade/data/everos_root)."""
    path = tmp_path / "everos_root"
    shutil.copytree(DATA / "everos_root", path)
    return path
