"""The built-in embedder: deterministic, offline and fast, so everos works with no model (G11).

How it works (feature hashing, the "hashing trick"):

1. The text is lowercased and cut into tokens: runs of letters and digits for alphabetic scripts,
   and one token per character for Chinese and Japanese (which have no spaces between words).
2. Features are drawn from the tokens: every token (unigram), every pair of neighbouring tokens
   (bigram; for CJK text these are the character bigrams that carry most of the meaning), and the
   character 3-grams of each alphabetic token padded with spaces (``" ca", "cat", "at "``), which
   let ``index`` and ``indexing`` share features.
3. Each feature is hashed with BLAKE2b (stable across runs, processes and machines, unlike
   Python's ``hash``) to a bucket in ``[0, dim)`` and a sign (+1/-1). Signs make colliding
   features cancel on average instead of piling up.
4. A feature counted ``n`` times weighs ``1 + ln(n)`` (sublinear term frequency) times the weight
   of its kind (unigram 1.0, bigram 0.5, 3-gram 0.25), and the vector is L2-normalised, so the dot
   product of two vectors is their cosine similarity.

Limits: the similarity is *lexical*. Texts that share words (or, through 3-grams, word stems) come
out close; synonyms, paraphrases and translations do not (``car`` and ``automobile`` are
unrelated here). Collisions add a little noise, less with a larger ``dim``. A text with no letters
or digits embeds to the zero vector (similarity 0 with everything). An OpenAI-compatible embedding
model (``[embedding] provider = "openai"``) replaces it for semantic search.

It is pure Python: about a millisecond per paragraph, run in worker threads (G5), or in worker
processes (:meth:`BuiltinEmbedder.use_workers`; ``everos cascade rebuild`` does): in threads its
CPU shares the process's GIL with everything else, and a rebuild of 10,000 documents went half
as fast for it.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence

import trio

from everos.providers._policy import Budget, Budgets
from everos.workers import CpuWorkers

__all__ = ["BuiltinEmbedder", "embed_texts"]

# Kana, CJK unified ideographs (with extension A) and compatibility ideographs.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_CJK_CHAR = re.compile(rf"[{_CJK}]")

_UNIGRAM_WEIGHT = 1.0
_BIGRAM_WEIGHT = 0.5
_TRIGRAM_WEIGHT = 0.25
# Texts handed to one worker thread at a time: bounds how long a cancelled call keeps a thread.
_TEXTS_PER_THREAD_CALL = 64
# Texts per call in a worker process (each call costs a round trip), and its deadline: 256 texts
# take about a quarter of a second.
_TEXTS_PER_PROCESS_CALL = 256
PROCESS_CALL_DEADLINE_S = 30.0


# Not cached: an lru_cache of 131,072 features held 35-40 MiB once full and embedded no faster
# (blake2b of a short feature costs what the cache lookup did: 540 vs 563 texts/s, issue #17).
def _slot(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % dim, (1.0 if value >> 63 else -1.0)


def _features(text: str) -> Counter[tuple[str, float]]:
    tokens = _TOKEN.findall(text.lower())
    counts: Counter[tuple[str, float]] = Counter()
    for token in tokens:
        counts[("w:" + token, _UNIGRAM_WEIGHT)] += 1
        if not _CJK_CHAR.match(token):  # a CJK token is one character: bigrams cover it
            padded = f" {token} "
            for i in range(len(padded) - 2):
                counts[("c:" + padded[i : i + 3], _TRIGRAM_WEIGHT)] += 1
    for left, right in zip(tokens, tokens[1:]):
        counts[(f"b:{left} {right}", _BIGRAM_WEIGHT)] += 1
    return counts


class BuiltinEmbedder:
    """Hashing embedder of ``dim`` floats; same interface as :class:`EmbeddingClient`.

    ``budgets`` bounds the worker threads per budget (interactive, background) so background
    indexing cannot delay a search's query embedding (G4); the default is 2 + 1 threads.
    Texts are cut to ``max_input_chars`` first, which bounds the work per text.
    """

    model = "builtin-hashing"
    embeds_facts = True
    keyword_weight = 0.7
    """Hybrid search's keyword share with this embedder: it finds words, as keyword search does
    better (bench/search_fusion.py, dev half)."""
    similarity_range = (0.10, 0.54)
    """A topic about something else shares about 0.10 of a query's features (search score 0), the
    right one up to 0.54 (score 1): measured with bench/search_fusion.py."""

    def __init__(self, dim: int, *, budgets: Budgets | None = None, max_input_chars: int = 8000) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.dim = dim
        self.max_input_chars = max_input_chars
        self.budgets = budgets if budgets is not None else Budgets(interactive=2, background=1)
        self._workers: CpuWorkers | None = None
        self.memory_mb = 2048

    def use_workers(self, workers: CpuWorkers | None, *, memory_mb: int | None = None) -> None:
        """Embed passages in ``workers`` from now on (None: in threads again), each call under
        ``memory_mb`` MiB when given and :data:`PROCESS_CALL_DEADLINE_S`. Queries stay in threads
        (one short text: a round trip would cost more). The vectors are the same either way."""
        self._workers = workers
        if memory_mb is not None:
            self.memory_mb = memory_mb

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text (the zero vector for a text with no tokens).

        Deterministic: the same text gives the same vector in every process. Blocks: CPU only,
        about a millisecond per paragraph; call :meth:`embed` from async code.
        """
        return [self._embed_one(text[: self.max_input_chars]) for text in texts]

    async def embed(self, texts: Sequence[str], *, budget: Budget | str,
                    purpose: str = "passage") -> list[list[float]]:
        """:meth:`embed_sync` in worker threads, at most 64 texts per thread call, under the
        ``budget``'s limiter; passages in worker processes instead after :meth:`use_workers`, 256
        texts a call. A checkpoint. ``purpose`` (query or passage) changes no vector.

        Raises:
            WorkerTimeout, WorkerCrashed, WorkerOutOfMemory: a call in a worker process failed
                (its worker was replaced).

        Cancellation handling: returns at once; a thread already running finishes its (small)
        chunk in the background and keeps its budget slot until then; a call in a worker process
        is killed with its worker.
        """
        limiter = self.budgets.limiter(budget)
        if not texts:
            await trio.lowlevel.checkpoint()
            return []
        workers = self._workers if purpose == "passage" else None
        step = _TEXTS_PER_THREAD_CALL if workers is None else _TEXTS_PER_PROCESS_CALL
        vectors: list[list[float]] = []
        for start in range(0, len(texts), step):
            chunk = list(texts[start : start + step])
            if workers is None:
                vectors.extend(
                    await trio.to_thread.run_sync(self.embed_sync, chunk, limiter=limiter, abandon_on_cancel=True)
                )
                continue
            async with limiter:
                vectors.extend(await workers.run_cpu(
                    embed_texts, self.dim, self.max_input_chars, chunk, deadline_s=PROCESS_CALL_DEADLINE_S,
                    memory_mb=self.memory_mb, task=f"embedding {len(chunk)} texts"))
        return vectors

    async def aclose(self) -> None:
        """Nothing to close (worker processes belong to whoever opened them); here so every
        embedder has the same interface. Idempotent."""
        self._workers = None
        await trio.lowlevel.checkpoint()

    def _embed_one(self, text: str) -> list[float]:
        vector = [0.0] * self.dim
        for (feature, weight), count in _features(text).items():
            bucket, sign = _slot(feature, self.dim)
            vector[bucket] += sign * weight * (1.0 + math.log(count))
        norm = math.sqrt(sum(x * x for x in vector))
        if norm == 0.0:
            return vector
        return [x / norm for x in vector]


def embed_texts(dim: int, max_input_chars: int, texts: list[str]) -> list[list[float]]:
    """What :meth:`BuiltinEmbedder.embed_sync` gives for ``texts`` (a module-level function, for
    a worker process). Blocks."""
    return BuiltinEmbedder(dim, max_input_chars=max_input_chars).embed_sync(texts)
