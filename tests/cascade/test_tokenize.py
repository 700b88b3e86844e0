"""A document's tokens are made in a worker process when the cascade has them (#12 item 2; G4, G5a).

jieba segments a 28 KB Chinese document in about a quarter of a second, holding the GIL; the index
tokenizes each topic's summary, content and facts, so a thread doing it would stall the server's
event loop for half a second a document. The server hands the cascade its conversion worker pool.
"""

from __future__ import annotations

import os
from pathlib import Path

from everos.cascade import locate_document
from everos.workers import open_cpu_workers

from .. import worker_jobs
from .conftest import GUIDE, FakeEmbedder, FakeSink, open_cascade, write_document


async def test_tokens_are_made_in_a_worker_process(root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    doc_dir = write_document(root, "Trio guide", GUIDE)
    async with open_cpu_workers(workers=1) as pool, \
            open_cascade(root, sink, embedder, cpu_workers=pool, tokenize=worker_jobs.pid_tokens) as cascade:
        await cascade.enqueue_document(doc_dir)
        [result] = await cascade.drain()
        [worker_pid] = {await pool.run_cpu(worker_jobs.pid, deadline_s=10, memory_mb=256)}
    assert result.error is None and result.outcome.action == "indexed"
    rows = sink.topics[locate_document(doc_dir).doc_id].values()
    assert {row.summary_tokens.split()[0] for row in rows} == {f"pid{worker_pid}"} != {f"pid{os.getpid()}"}
    facts = sink.facts[locate_document(doc_dir).doc_id]
    assert facts and all(fact.text_tokens.split()[0] == f"pid{worker_pid}" for fact in facts)
    assert "nursery" in " ".join(row.content_tokens for row in rows)


async def test_a_tokenizer_past_its_deadline_fails_the_attempt_and_frees_its_worker(
        root: Path, sink: FakeSink, embedder: FakeEmbedder) -> None:
    """G5a: a tokenizer that never ends is killed at the conversion deadline; the attempt fails
    with WORKER_TIMEOUT (its row retried later, then dead with the reason) and the pool has a
    fresh worker for the next call."""
    doc_dir = write_document(root, "Trio guide", GUIDE)
    async with open_cpu_workers(workers=1) as pool, \
            open_cascade(root, sink, embedder, cpu_workers=pool, tokenize=worker_jobs.spinning_tokens,
                         ingest={"conversion_timeout_seconds": 0.5}) as cascade:
        await cascade.enqueue_document(doc_dir)
        [result] = await cascade.drain()
        assert result.error is not None and "WORKER_TIMEOUT" in result.error
        assert pool.snapshot().killed == 1
        assert await pool.run_cpu(worker_jobs.add, 2, 3, deadline_s=10, memory_mb=256) == 5
    assert locate_document(doc_dir).doc_id not in sink.topics
