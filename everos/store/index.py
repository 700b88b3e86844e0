"""The search index: LanceDB tables, their one writer, and the rows the cascade hands them.

A module of its own, not re-exported from :mod:`everos.store`, because importing LanceDB costs
about a second: only the code that touches the index pays for it.
"""

from everos.store._index_rows import FactRow, IndexSink, TopicRow
from everos.store._index_writer import IndexWriter
from everos.store._lancedb import FACT_TABLE, TOPIC_TABLE, IndexStore, fact_schema, topic_schema

__all__ = [
    "FACT_TABLE",
    "TOPIC_TABLE",
    "FactRow",
    "IndexSink",
    "IndexStore",
    "IndexWriter",
    "TopicRow",
    "fact_schema",
    "topic_schema",
]
