"""The LanceDB tables' columns and indexes, the rows as Arrow, and the SQL filters over them.

Pure: nothing here opens a table. :mod:`everos.store._lancedb` uses it to create, check, write and
read the tables.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import trio
from lancedb.index import FTS, Bitmap, BTree

from everos.store._index_rows import FactRow, TopicRow

__all__ = [
    "FACT_FIELDS", "FACT_TABLE", "FTS_COLUMNS", "FTS_CONFIG", "MAX_FACTS_SCANNED", "MAX_ROWS_PER_DOCUMENT",
    "RECALL_COLUMNS", "SCALAR_INDEXES", "TOPIC_FIELDS", "TOPIC_RESULT_COLUMNS", "TOPIC_TABLE", "WriteOp",
    "arrow_rows", "chunked", "fact_schema", "in_list", "quote", "scope_filter", "stale_ids", "topic_schema",
    "vector_index_name", "vector_index_partitions", "vector_nprobes", "wanted_vector_partitions",
]

TOPIC_TABLE = "knowledge_topic"
FACT_TABLE = "knowledge_fact"
FTS_COLUMNS = {TOPIC_TABLE: ("summary_tokens", "content_tokens"), FACT_TABLE: ()}
# Scalar indexes: the upsert's key and the delete's filters (``id``, ``doc_id``), the fact lookup
# (``topic_id``) and the scope every search filters on (few values: bitmaps).
SCALAR_INDEXES = {
    TOPIC_TABLE: (("id", BTree), ("doc_id", BTree), ("app_id", Bitmap), ("project_id", Bitmap)),
    FACT_TABLE: (("id", BTree), ("doc_id", BTree), ("topic_id", BTree)),
}
# Tokens arrive lowercased and segmented (CJK included), so the index only splits on whitespace; it
# stems English words (at index and query time alike) so "eruption" meets "erupt".
FTS_CONFIG = FTS(base_tokenizer="whitespace", lower_case=True, stem=True, remove_stop_words=False,
           ascii_folding=False, with_position=False)
TOPIC_FIELDS = tuple(f.name for f in dataclasses.fields(TopicRow))
FACT_FIELDS = tuple(f.name for f in dataclasses.fields(FactRow))
# What a search hit carries: not the vector nor the token columns (the whole content, tokenized),
# which cost a read per hit and are never shown.
TOPIC_RESULT_COLUMNS = [name for name in TOPIC_FIELDS if name not in ("vector", "summary_tokens", "content_tokens")]
# What a recall query reads of its (up to recall_n) rows: fusion needs the id, the gone-document
# check the doc_id; the few hits shown get the rest in one lookup afterwards.
RECALL_COLUMNS = ["id", "doc_id"]
# Rows one read may return: bounds memory when a query matches far more than anyone asked for.
MAX_FACTS_SCANNED = 20_000
MAX_ROWS_PER_DOCUMENT = 100_000


def topic_schema(dim: int) -> pa.Schema:
    """The ``knowledge_topic`` columns; ``vector`` is a fixed-size list of ``dim`` float32 (nullable)."""
    text = pa.string()
    return pa.schema([
        pa.field("id", text, nullable=False), ("doc_id", text), ("app_id", text), ("project_id", text),
        ("category_id", text), ("topic_name", text), ("topic_path", text), ("depth", pa.int32()),
        ("parent_node_id", text), ("summary", text), ("summary_tokens", text), ("content_tokens", text),
        ("content_labels", pa.list_(text)), ("md_path", text), ("content_sha256", text),
        ("vector", pa.list_(pa.float32(), dim)), ("created_at", pa.float64()), ("updated_at", pa.float64()),
    ])


def fact_schema(dim: int) -> pa.Schema:
    """The ``knowledge_fact`` columns; ``vector`` as in :func:`topic_schema`."""
    text = pa.string()
    return pa.schema([
        pa.field("id", text, nullable=False), ("topic_id", text), ("doc_id", text), ("app_id", text),
        ("project_id", text), ("fact_index", pa.int32()), ("text", text), ("text_tokens", text),
        ("md_path", text), ("vector", pa.list_(pa.float32(), dim)),
    ])


def quote(value: str) -> str:
    """A SQL string literal (scope ids are validated upstream; quotes are escaped all the same)."""
    return "'" + value.replace("'", "''") + "'"


def in_list(column: str, values: Iterable[str]) -> str:
    return f"{column} IN ({', '.join(quote(v) for v in values)})"


def chunked(values: Sequence[str] | Iterable[str], size: int = 500) -> list[list[str]]:
    """``values`` sorted, in lists of at most ``size``: bounds the length of one SQL filter."""
    ordered = sorted(values)
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]


def stale_ids(existing: dict[str, set[str]], rows: Sequence[Any]) -> list[str]:
    """The ids in ``existing`` (by document) that ``rows`` no longer hold."""
    given = {row.id for row in rows}
    return [row_id for ids in existing.values() for row_id in ids if row_id not in given]


def scope_filter(app_id: str, project_id: str) -> str:
    return f"app_id = {quote(app_id)} AND project_id = {quote(project_id)}"


def arrow_rows(rows: Sequence[Any], names: tuple[str, ...], schema: pa.Schema) -> pa.Table:
    """Dataclass rows as one Arrow table; an empty vector becomes a null (keyword-only row)."""
    columns: dict[str, list[Any]] = {name: [getattr(row, name) for row in rows] for name in names}
    columns["vector"] = [list(v) if v else None for v in columns["vector"]]
    if "content_labels" in columns:
        columns["content_labels"] = [list(v) for v in columns["content_labels"]]
    return pa.table(columns, schema=schema)


@dataclass(eq=False)
class WriteOp:
    """One document operation in the writer's channel; ``topics is None`` means delete."""

    doc_id: str
    topics: tuple[TopicRow, ...] | None
    facts: tuple[FactRow, ...]
    done: trio.Event = field(default_factory=trio.Event)
    removed_topics: int = 0
    error: BaseException | None = None

    @property
    def rows(self) -> int:
        return max(1, len(self.topics or ()) + len(self.facts))


# The topics' vector index: IVF_FLAT, measured on 100k topics of the hashing embedder (2 cores):
# a flat scan 90 ms p50; IVF_FLAT of 64 partitions built in 3.5 s and answered in 13-17 ms with
# 0.98-0.998 of the exact top 10 (4-16 probes); IVF_PQ of 316 partitions took 300 s to build, IVF_SQ
# of 128 18 s for no better recall. One partition per VECTOR_ROWS_PER_PARTITION rows; the index is
# trained again when the table has twice the rows its partitions were chosen for.
VECTOR_ROWS_PER_PARTITION = 1500
_VECTOR_INDEX_PREFIX = "vector_ivf_"


def vector_index_name(partitions: int) -> str:
    """The index's name records its partitions: ``vector_ivf_<partitions>``."""
    return f"{_VECTOR_INDEX_PREFIX}{partitions}"


def vector_index_partitions(index_names: Iterable[str]) -> int | None:
    """The partitions of the vector index among ``index_names``, None when there is none."""
    for name in index_names:
        if name.startswith(_VECTOR_INDEX_PREFIX) and name[len(_VECTOR_INDEX_PREFIX):].isdigit():
            return int(name[len(_VECTOR_INDEX_PREFIX):])
    return None


def wanted_vector_partitions(rows: int, min_rows: int, current: int | None) -> int | None:
    """The partitions to train an index with for a table of ``rows``, or None to keep what there is
    (no index below ``min_rows``, 0 meaning never; a new one once the rows doubled)."""
    if min_rows <= 0 or rows < min_rows:
        return None
    wanted = max(1, rows // VECTOR_ROWS_PER_PARTITION)
    if current is not None and wanted < 2 * current:
        return None
    return wanted


def vector_nprobes(partitions: int) -> int:
    """Partitions a query searches: a quarter of them, at least 12. Paragraph queries find 0.998 of
    the exact top 10 with 16 of 64; the labelled set's short queries, whose hashing vectors are
    close to every topic alike, need more (0.95 with 8 of 13 partitions at 20k topics)."""
    return min(partitions, max(12, partitions // 4))
