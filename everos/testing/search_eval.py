"""The labelled search set (``bench/search_set``) and its evaluation: real READMEs of Python
packages (English and Chinese), queries written for them, each with the one document that
answers it, and the document-level hit@1, hit@3, hit@10 and MRR of each search method.

:func:`run_evaluation` starts ``everos server start`` on loopback in a temporary root (the
embedded defaults, plus any ``settings``), uploads every document over HTTP, waits until each is
indexed for keyword search and then until its vectors are in (both times are reported), runs
every query of the split for each method through ``POST /api/v1/knowledge/search`` and returns
the figures (with the server's ``took_ms`` p50 and p95 per method). ``bench/search_eval.py`` is
its command line; the test of the set (``tests/search/test_labelled.py``) calls the same function.

A query's rank is the position of its document among the distinct documents of the hits, in hit
order (a document with several matching topics counts once, at its best topic); a document not
among the hits has no rank (it counts as a miss at every cut-off and 0 in the MRR).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from everos.cascade._indexer import DEFERRED
from everos.config import render_template
from everos.testing.replay._server import ManagedServer, settings_env

__all__ = [
    "CUTOFFS",
    "KINDS",
    "LANGS",
    "SET_DIR",
    "Query",
    "document_rank",
    "figures",
    "load_queries",
    "load_documents",
    "parse_settings",
    "percentile",
    "run_evaluation",
    "summarize",
]

# The set lives in the repository, next to the benchmarks: <repo>/bench/search_set.
SET_DIR = Path(__file__).resolve().parents[2] / "bench" / "search_set"
KINDS = ("lexical", "paraphrase", "question")
LANGS = ("en", "zh")
SPLITS = ("dev", "test")
CUTOFFS = (1, 3, 10)
API = "/api/v1/knowledge"
UPLOAD_TIMEOUT_S = 120.0
INDEX_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Query:
    query: str
    doc: str
    kind: str
    lang: str
    split: str


def load_documents(set_dir: Path = SET_DIR) -> dict[str, Path]:
    """``{stem: path}`` of the set's documents (``docs/*.md``), sorted by stem."""
    return {path.stem: path for path in sorted((set_dir / "docs").glob("*.md"))}


def load_queries(set_dir: Path = SET_DIR, split: str = "all") -> list[Query]:
    """The queries of ``split`` (``dev``, ``test`` or ``all``), checked against the documents."""
    documents = load_documents(set_dir)
    queries = []
    for number, entry in enumerate(json.loads((set_dir / "queries.json").read_text(encoding="utf-8"))):
        query = Query(**entry)
        problems = [f"unknown document {query.doc!r}" if query.doc not in documents else "",
                    f"kind {query.kind!r}" if query.kind not in KINDS else "",
                    f"lang {query.lang!r}" if query.lang not in LANGS else "",
                    f"split {query.split!r}" if query.split not in SPLITS else "",
                    "empty query" if not query.query.strip() else ""]
        if any(problems):
            raise ValueError(f"queries.json entry {number}: {', '.join(p for p in problems if p)}")
        if split in ("all", query.split):
            queries.append(query)
    if split not in ("all", *SPLITS):
        raise ValueError(f"split must be dev, test or all, not {split!r}")
    return queries


def document_rank(hit_docs: Iterable[str], doc: str) -> int | None:
    """The 1-based position of ``doc`` among the distinct documents of ``hit_docs`` (in order)."""
    for rank, found in enumerate(dict.fromkeys(hit_docs), 1):
        if found == doc:
            return rank
    return None


def figures(ranks: Sequence[int | None]) -> dict[str, float | int]:
    """hit@1, hit@3, hit@10 and MRR of ``ranks`` (``None``: not found), rounded to 3 places."""
    count = len(ranks)
    result: dict[str, float | int] = {"n": count}
    for cutoff in CUTOFFS:
        result[f"hit@{cutoff}"] = round(sum(r is not None and r <= cutoff for r in ranks) / count, 3) if count else 0.0
    result["mrr"] = round(sum(1 / r for r in ranks if r is not None) / count, 3) if count else 0.0
    return result


def summarize(queries: Sequence[Query], ranks: Sequence[int | None]) -> dict[str, Any]:
    """One method's figures: overall, per kind, per lang, and per kind within each lang."""
    def select(keep: Any) -> list[int | None]:
        return [rank for query, rank in zip(queries, ranks) if keep(query)]

    return {
        "overall": figures(ranks),
        "kind": {kind: figures(select(lambda q, k=kind: q.kind == k)) for kind in KINDS},
        "lang": {lang: figures(select(lambda q, g=lang: q.lang == g)) for lang in LANGS},
        "lang_kind": {f"{lang}/{kind}": figures(select(lambda q, g=lang, k=kind: q.lang == g and q.kind == k))
                      for lang in LANGS for kind in KINDS},
    }


def parse_settings(pairs: Iterable[str]) -> dict[str, str]:
    """``section.key=value`` pairs (``--set``) as the ``section__key`` settings of
    :func:`settings_env`."""
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        section, dot, key = name.strip().rpartition(".")  # knowledge.search.recall_n: the last dot
        if not (sep and dot and section and key):
            raise ValueError(f"a setting is section.key=value, not {pair!r}")
        settings[f"{section.replace('.', '__')}__{key}"] = value
    return settings


async def _upload(client: httpx.AsyncClient, stem: str, path: Path) -> str:
    response = await client.post(f"{API}/documents", data={"title": stem},
                                 files={"file": (path.name, path.read_bytes(), "text/markdown")})
    if response.status_code not in (200, 201, 202):
        raise RuntimeError(f"uploading {path.name}: {response.status_code} {response.text[:500]}")
    data = response.json()["data"]
    if response.status_code == 202:  # extraction still pending: its task names the document
        while (task := (await client.get(f"{API}/tasks/{data['task_id']}")).json()["data"])["status"] in (
                "queued", "running"):
            await trio.sleep(0.1)
        if not task.get("doc_id"):
            raise RuntimeError(f"extracting {path.name}: {task.get('status')} {task.get('last_error')}")
        return task["doc_id"]
    return data["doc_id"]


async def _wait_indexed(client: httpx.AsyncClient, doc_ids: dict[str, str], *, vectors: bool = True
                        ) -> dict[str, Any]:
    """Wait until every document is indexed (with its vectors, unless not ``vectors``);
    ``{stem: {"topics"}}``.

    Raises:
        RuntimeError: a document failed, or its vectors are pending for another reason than the
            queue of a slow embedder (the embedder failed).
    """
    states: dict[str, Any] = {}
    for stem, doc_id in doc_ids.items():
        while True:
            document = (await client.get(f"{API}/documents/{doc_id}")).json()["data"]
            queued = DEFERRED in (document.get("index_error") or "")
            if document.get("index_status") != "pending" and not (vectors and queued):
                break
            await trio.sleep(0.1)
        if document.get("index_status") != "indexed" or (document.get("index_error") and not queued):
            raise RuntimeError(f"{stem} was not indexed: {document.get('index_status')} "
                               f"{document.get('index_error')}")
        states[stem] = {"topics": len(document.get("topics") or [])}
    return states


async def _search(client: httpx.AsyncClient, query: str, method: str, top_k: int,
                  took_ms: list[float] | None = None) -> list[dict[str, Any]]:
    response = await client.post(f"{API}/search", json={"query": query, "method": method, "top_k": top_k})
    if response.status_code != 200:
        raise RuntimeError(f"search {method} {query!r}: {response.status_code} {response.text[:500]}")
    data = response.json()["data"]
    if took_ms is not None:
        took_ms.append(float(data["took_ms"]))
    return data["hits"]


def percentile(values: Sequence[float], share: float) -> float:
    """The value at ``share`` (0 to 1) of ``values`` sorted, by nearest rank; 0.0 for none."""
    ordered = sorted(values)
    return ordered[round(share * (len(ordered) - 1))] if ordered else 0.0


def latency(took_ms: Sequence[float]) -> dict[str, float]:
    """p50 and p95 of the server's ``took_ms`` (nearest rank), in ms."""
    return {"p50_ms": round(percentile(took_ms, 0.5), 2), "p95_ms": round(percentile(took_ms, 0.95), 2)}


async def evaluate(url: str, doc_ids: dict[str, str], queries: Sequence[Query], methods: Sequence[str],
                   top_k: int = 50, keep_hits: bool = False) -> dict[str, Any]:
    """Run every query for each method against the server at ``url``; the figures per method,
    with the rank of each query (``ranks``, in query order), the seconds the searches took and
    the p50/p95 of the server's ``took_ms`` (``took``; queries one at a time, top_k as given).
    With ``keep_hits``, also each query's hits as ``[topic_id, document stem, score]`` lists
    (``hits``, in query order): what ``bench/search_fusion.py`` tunes fusion on."""
    stems = {doc_id: stem for stem, doc_id in doc_ids.items()}
    results: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        for method in methods:
            started = time.monotonic()
            took_ms: list[float] = []
            found = [await _search(client, q.query, method, top_k, took_ms) for q in queries]
            ranks = [document_rank([hit["document"]["doc_id"] for hit in hits], doc_ids[q.doc])
                     for q, hits in zip(queries, found)]
            results[method] = {**summarize(queries, ranks), "ranks": ranks, "took": latency(took_ms),
                               "search_seconds": round(time.monotonic() - started, 2)}
            if keep_hits:
                results[method]["hits"] = [[[hit["topic_id"], stems.get(hit["document"]["doc_id"], ""), hit["score"]]
                                            for hit in hits] for hits in found]
    return results


async def run_evaluation(methods: Sequence[str] = ("keyword", "vector", "hybrid"), split: str = "all",
                         settings: dict[str, Any] | None = None, top_k: int = 50,
                         set_dir: Path = SET_DIR, keep_hits: bool = False) -> dict[str, Any]:
    """The whole evaluation against a server of its own (see the module's docstring). The
    temporary root is removed and the server stopped however it ends."""
    documents = load_documents(set_dir)
    queries = load_queries(set_dir, split)
    tmp = Path(tempfile.mkdtemp(prefix="everos-search-eval-"))
    started = time.monotonic()
    try:
        root = tmp / "root"
        root.mkdir()
        (root / "everos.toml").write_text(render_template(), encoding="utf-8")
        server = ManagedServer(root, settings_env(settings or {}), None)
        try:
            await server.start()
            async with httpx.AsyncClient(base_url=server.url, timeout=UPLOAD_TIMEOUT_S) as client:
                # One upload after another: the index is then built in the same order on every run.
                doc_ids = {stem: await _upload(client, stem, path) for stem, path in documents.items()}
                uploaded_s = time.monotonic() - started
                with trio.fail_after(INDEX_TIMEOUT_S):
                    await _wait_indexed(client, doc_ids, vectors=False)
                    keyword_s = time.monotonic() - started
                    states = await _wait_indexed(client, doc_ids)
            indexed_s = time.monotonic() - started
            results = await evaluate(server.url, doc_ids, queries, methods, top_k, keep_hits)
        finally:
            with trio.CancelScope(shield=True):
                await server.stop()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "split": split, "top_k": top_k, "settings": dict(settings or {}),
        "documents": len(documents), "queries": len(queries),
        "counts": {"kind": {k: sum(q.kind == k for q in queries) for k in KINDS},
                   "lang": {g: sum(q.lang == g for q in queries) for g in LANGS},
                   "documents_lang": {g: len({q.doc for q in queries if q.lang == g}) for g in LANGS}},
        "topics": sum(state["topics"] for state in states.values()),
        "topics_per_document": {stem: state["topics"] for stem, state in states.items()},
        "uploaded_seconds": round(uploaded_s, 2),
        "keyword_indexed_seconds": round(keyword_s, 2),
        "upload_and_index_seconds": round(indexed_s, 2),
        "total_seconds": round(time.monotonic() - started, 2),
        "methods": results,
    }


def table(result: dict[str, Any]) -> str:
    """The figures as a short human table (one row per method and slice)."""
    lines = [f"{result['queries']} queries ({result['split']}) on {result['documents']} documents, "
             f"top_k {result['top_k']}, {result['total_seconds']} s",
             f"{'method':8} {'slice':16} {'n':>4} {'hit@1':>6} {'hit@3':>6} {'hit@10':>6} {'mrr':>6}"]
    for method, found in result["methods"].items():
        rows = [("all", found["overall"]), *found["kind"].items(), *found["lang"].items()]
        for name, f in rows:
            if f["n"]:
                lines.append(f"{method:8} {name:16} {f['n']:>4} {f['hit@1']:>6.3f} {f['hit@3']:>6.3f} "
                             f"{f['hit@10']:>6.3f} {f['mrr']:>6.3f}")
    return "\n".join(lines)
