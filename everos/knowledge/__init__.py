"""Knowledge documents: records, on-disk layout, the EverOS markdown format, taxonomy, extraction.

This package holds the pure core of ingest: everything here is plain functions over plain data,
except the extractors (:class:`BuiltinExtractor`, :class:`LLMExtractor`), which run in worker threads
or talk to a model.
"""

from everos.knowledge._builtin_extractor import (
    FLAT_TOPIC_TARGET_CHARS,
    HEADING_SCAN_LIMIT,
    MAX_TOPICS,
    SAMPLE_CHARS,
    extract_structure,
)
from everos.knowledge._decode import decode_upload
from everos.knowledge._extractor import BuiltinExtractor, Extractor, SourceDocument
from everos.knowledge._layout import (
    INDEX_FILENAME,
    ORIGINAL_DIRNAME,
    TAXONOMY_FILENAME,
    DocumentPath,
    app_dir_name,
    app_id_from_dir,
    category_dir_name,
    document_dir,
    document_dir_name,
    ensure_within,
    knowledge_dir,
    md_kind,
    original_path,
    parse_document_path,
    project_dir_name,
    project_id_from_dir,
    safe_filename,
    sanitize_name,
    scope_dir,
    taxonomy_path,
    topic_filename,
)
from everos.knowledge._llm_extractor import LLMExtractor
from everos.knowledge._markdown import (
    INDEX_KEYS,
    TOPIC_KEYS,
    dump_frontmatter,
    parse_index_md,
    parse_markdown,
    parse_topic_md,
    render_document_files,
    render_index_md,
    render_topic_md,
)
from everos.knowledge._models import (
    DOC_ID_RE,
    OTHERS_CATEGORY,
    SCOPE_ID_RE,
    TOPIC_ID_RE,
    ExtractedDocument,
    KnowledgeDocument,
    KnowledgeTopic,
    TopicNode,
    document_record,
    flatten,
    new_doc_id,
    split_topic_id,
    topic_count,
    validate_app_id,
    validate_doc_id,
    validate_project_id,
    validate_scope_id,
    validate_topic_id,
)
from everos.knowledge._taxonomy import (
    DEFAULT_CATEGORIES,
    Category,
    classify,
    parse_taxonomy_md,
    render_taxonomy_md,
)

__all__ = [
    "BuiltinExtractor",
    "Category",
    "DEFAULT_CATEGORIES",
    "DOC_ID_RE",
    "DocumentPath",
    "ExtractedDocument",
    "Extractor",
    "FLAT_TOPIC_TARGET_CHARS",
    "HEADING_SCAN_LIMIT",
    "INDEX_FILENAME",
    "INDEX_KEYS",
    "KnowledgeDocument",
    "KnowledgeTopic",
    "LLMExtractor",
    "MAX_TOPICS",
    "ORIGINAL_DIRNAME",
    "OTHERS_CATEGORY",
    "SAMPLE_CHARS",
    "SCOPE_ID_RE",
    "SourceDocument",
    "TAXONOMY_FILENAME",
    "TOPIC_ID_RE",
    "TOPIC_KEYS",
    "TopicNode",
    "app_dir_name",
    "app_id_from_dir",
    "category_dir_name",
    "classify",
    "decode_upload",
    "document_dir",
    "document_dir_name",
    "document_record",
    "dump_frontmatter",
    "ensure_within",
    "extract_structure",
    "flatten",
    "knowledge_dir",
    "md_kind",
    "new_doc_id",
    "original_path",
    "parse_document_path",
    "parse_index_md",
    "parse_markdown",
    "parse_taxonomy_md",
    "parse_topic_md",
    "project_dir_name",
    "project_id_from_dir",
    "render_document_files",
    "render_index_md",
    "render_taxonomy_md",
    "render_topic_md",
    "safe_filename",
    "sanitize_name",
    "scope_dir",
    "split_topic_id",
    "taxonomy_path",
    "topic_count",
    "topic_filename",
    "validate_app_id",
    "validate_doc_id",
    "validate_project_id",
    "validate_scope_id",
    "validate_topic_id",
]

for _name in __all__:
    _obj = globals()[_name]
    # Public classes and functions report the package, not the private module (trio/httpx style).
    if getattr(_obj, "__module__", "").startswith("everos.knowledge._"):
        try:
            _obj.__module__ = __name__
        except (AttributeError, TypeError):
            pass
del _name, _obj
