"""The cascade: from markdown under the root to the search index, through a leased queue.

Document directories are queued in ``md_change_state`` (keyed by their path) by the ingest path,
the watcher and the scanner, through the :class:`IndexLedger` that keeps each directory's queue
row and index status together; index workers lease them one at a time, parse the markdown (unless
its writer's rows are current), write the SQLite rows (the document's projection), derive facts,
tokens and vectors (background budget) and hand the rows to an
:class:`~everos.store._index_rows.IndexSink`. See :class:`CascadeService`.
"""

from everos._exports import claim_public_names
from everos.cascade._facts import FactExtractor, clean_facts, facts_from_answer
from everos.cascade._health import cascade_health, stall_after_seconds
from everos.cascade._indexer import DocumentIndexer, IndexerParts, IndexOutcome, embedder_identity
from everos.cascade._ledger import IndexLedger
from everos.cascade._rows import (
    GONE,
    DocumentFiles,
    DocumentLocation,
    ParsedDocument,
    TopicParts,
    embedding_text,
    fact_rows,
    locate_document,
    parse_document,
    topic_content_sha256,
    topic_row,
)
from everos.cascade._scanner import Scanner, plan_scan
from everos.cascade._service import CascadeService, cascade_migrations, document_dir_of, summarize
from everos.cascade._snapshot import read_document_dir, stat_document_dir, walk_document_dirs
from everos.cascade._state import index_statuses
from everos.cascade._watcher import TREE_CHANGED, ChangeBatcher, Watcher, classify_change
from everos.cascade._worker import QUEUE_KIND, QUEUE_TABLE, AttemptResult, IndexWorkers

__all__ = [
    "AttemptResult",
    "CascadeService",
    "ChangeBatcher",
    "DocumentFiles",
    "DocumentIndexer",
    "DocumentLocation",
    "FactExtractor",
    "GONE",
    "IndexLedger",
    "IndexOutcome",
    "IndexWorkers",
    "IndexerParts",
    "ParsedDocument",
    "QUEUE_KIND",
    "QUEUE_TABLE",
    "Scanner",
    "TREE_CHANGED",
    "TopicParts",
    "Watcher",
    "cascade_health",
    "cascade_migrations",
    "classify_change",
    "clean_facts",
    "document_dir_of",
    "embedder_identity",
    "embedding_text",
    "fact_rows",
    "facts_from_answer",
    "index_statuses",
    "locate_document",
    "parse_document",
    "plan_scan",
    "read_document_dir",
    "stall_after_seconds",
    "stat_document_dir",
    "summarize",
    "topic_content_sha256",
    "topic_row",
    "walk_document_dirs",
]

claim_public_names(globals())
