"""Every setting of everos, declared once: its default, its unit (in its name), its help text and
the values it allows (:func:`setting`), in one frozen dataclass per TOML section under
:class:`Config`.

The declarations are the single source: loading validates against them (:mod:`._validate`,
:mod:`._load`), ``everos init`` renders its commented template and ``everos config show`` its
listing from them (:mod:`._render`). Sections and keys that EverOS 1.x has but everos does not use
are listed here too (:data:`IGNORED_SECTIONS`, :data:`IGNORED_KEYS`), so its files load.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from everos.config._values import is_time_zone, parse_similarity_range, parse_weight

__all__ = [
    "IGNORED_KEYS",
    "IGNORED_SECTIONS",
    "RETIRED_KEYS",
    "SECTIONS",
    "ApiSettings",
    "CascadeSettings",
    "Config",
    "EmbeddingSettings",
    "IngestSettings",
    "KnowledgeSearchSettings",
    "KnowledgeSettings",
    "LanceDBSettings",
    "LimitsSettings",
    "LLMSettings",
    "MemorySettings",
    "RerankSettings",
    "SQLiteSettings",
    "is_time_zone",
    "parse_similarity_range",
    "parse_weight",
    "section_class",
    "setting",
]


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    secret: bool = False,
    check: tuple[Callable[[Any], bool], str] | None = None,
) -> Any:
    """Declare one setting: its default, help text and the values it allows.

    ``positive`` rejects zero and negatives (every timeout: a zero timeout is never "no timeout"
    here, it is an error). ``minimum`` and ``maximum`` are inclusive bounds. ``check`` is a
    predicate for what a type cannot say, with the words that describe what it allows.
    """
    metadata = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "positive": positive,
        "secret": secret,
        "check": check,
    }
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class ApiSettings:
    host: str = setting("127.0.0.1", "Address the HTTP server binds to. Any other than loopback needs an API key "
                                     "(`everos keys create`), or --insecure-no-auth.")
    port: int = setting(8000, "TCP port of the HTTP server (0 picks a free one).", minimum=0, maximum=65535)
    request_timeout_seconds: float = setting(
        30.0, "Deadline of every HTTP request; past it the answer is 504 REQUEST_TIMEOUT.", positive=True
    )
    graceful_timeout_seconds: float = setting(
        5.0, "On SIGINT/SIGTERM, how long in-flight requests get before they are cut.", positive=True
    )
    startup_timeout_seconds: float = setting(
        30.0, "How long opening stores and starting workers may take before startup fails.", positive=True
    )
    log_level: str = setting("INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    log_format: str = setting("text", "Log lines as text (key=value fields) or json (one object per line).",
                              choices=("text", "json"))
    idle_timeout_seconds: float = setting(
        5.0, "How long a connection may go without a whole request head: from its opening, or its last "
             "answer, until the next request's headers have all arrived (hypercorn's keep_alive_timeout). "
             "Closes idle keep-alive connections, and clients that send their headers slowly.", positive=True)
    body_timeout_seconds: float = setting(
        20.0, "A request body must arrive within this, plus one second for every body_min_rate_bytes "
              "received (the rule of Apache's mod_reqtimeout); else 408 REQUEST_BODY_TIMEOUT and the "
              "connection is closed.", positive=True)
    body_min_rate_bytes: int = setting(
        500, "The body rate, in bytes per second, that extends body_timeout_seconds.", positive=True)
    max_connections: int = setting(
        0, "Open HTTP connections at most; a new one beyond gets 503 and is closed. 0: the open-file limit "
           "less 128 descriptors kept for the server's own files, at most 1024.", minimum=0)
    key_requests_per_second: float = setting(
        50.0, "Requests a second each API key may send on average (0: no limit); over it, 429 RATE_LIMITED "
              "with Retry-After. `everos keys create --rate` sets a key's own.", minimum=0)
    key_burst: int = setting(100, "Requests an API key may send at once above its rate.", minimum=1)
    key_concurrent_uploads: int = setting(
        4, "Uploads (POST/PUT of a document) each API key may have in flight (0: no limit); `everos keys "
           "create --uploads` sets a key's own.", minimum=0)
    cors_origins: list = setting(
        [], "Browser origins allowed to call the API (CORS), e.g. [\"http://localhost:3000\"]; empty allows none.",
        check=(lambda origins: all(isinstance(o, str) and _ORIGIN_RE.fullmatch(o) for o in origins),
               "a list of origins such as 'http://localhost:3000' (scheme, host and port; no path, no '*')"))


_ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


@dataclass(frozen=True)
class MemorySettings:
    timezone: str = setting("UTC", "Time zone used to display timestamps in responses (EverOS [memory]).",
                            check=(is_time_zone, "an IANA time zone name such as 'UTC' or 'Europe/Berlin'"))


@dataclass(frozen=True)
class _ProviderSettings:
    """Keys shared by every model endpoint: one attempt policy serves them all."""

    provider: str = setting("builtin", "builtin (offline, no network) or openai (any OpenAI-compatible endpoint).",
                            choices=("builtin", "openai"))
    base_url: str = setting("", "Base URL of the OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1.")
    api_key: str = setting("", "API key sent as a Bearer token; empty sends none.", secret=True)
    model: str = setting("", "Model name sent with each request.")
    timeout_seconds: float = setting(60.0, "Deadline of one attempt (connect, send, full answer).", positive=True)
    call_deadline_seconds: float = setting(
        300.0, "Deadline of one call across all its attempts and backoff sleeps.", positive=True
    )
    max_retries: int = setting(3, "Retries after the first attempt on timeouts, closed connections, 408/409/429/5xx.",
                               minimum=0)
    max_concurrent: int = setting(4, "Attempts in flight at once for interactive work (uploads, searches).",
                                  minimum=1)
    background_max_concurrent: int = setting(
        2, "Attempts in flight at once for background work (indexing, facts); a separate budget.", minimum=1
    )
    slots: int = setting(
        0, "Requests the endpoint serves at once (llama-server --parallel). When set, no more attempts than "
        "this are sent, and a free slot goes to waiting interactive work (uploads, searches) before "
        "background work; 0: unknown, only the two budgets bound attempts.", minimum=0
    )
    retry_backoff_base_seconds: float = setting(0.5, "First backoff sleep; doubles per retry, with jitter.",
                                                positive=True)
    retry_backoff_max_seconds: float = setting(30.0, "Longest backoff sleep, Retry-After included.", positive=True)
    circuit_failure_threshold: int = setting(
        5, "Consecutive failed calls that open the circuit breaker for this endpoint.", minimum=1
    )
    circuit_cooldown_seconds: float = setting(
        30.0, "How long an open circuit fails calls at once before letting one probe through.", positive=True
    )
    extra: dict = setting({}, "Extra fields merged into every request body (e.g. temperature, extra_body).")


@dataclass(frozen=True)
class LLMSettings(_ProviderSettings):
    stream: bool = setting(
        True, "Ask for answers as a stream: an attempt then lasts while the model writes and fails only when "
        "nothing arrives for timeout_seconds (a local model may take minutes for a long answer); false: the "
        "whole answer within timeout_seconds.")
    context_tokens: int = setting(
        32768, "The model's context window in tokens (llama-server --ctx-size per slot). A document whose "
        "prompt fits, with room for the answer, is extracted in one call, its category (and, with "
        "[cascade] llm_facts = with-extraction, its facts) in the same answer; longer ones in batches that fit.", minimum=2048
    )
    max_topic_depth: int = setting(5, "Deepest topic level the LLM extractor keeps.", minimum=1)
    fallback: str = setting(
        "builtin", "When the model fails (errors, open circuit, past extraction_timeout_seconds): builtin "
        "extracts with the built-in extractor and says so; none fails the job (503, as with no fallback).",
        choices=("builtin", "none"))
    extraction_timeout_seconds: float = setting(
        300.0, "Deadline of the model's part of one extraction, after which the built-in extractor runs "
        "(fallback = builtin); capped at 3/4 of [ingest] job_timeout_seconds.", positive=True)


@dataclass(frozen=True)
class EmbeddingSettings(_ProviderSettings):
    model: str = setting(
        "", "Model name sent with each request. With provider = builtin: multilingual-e5-small (by meaning, "
        "about 100 languages, 384-d; the default when empty) or hashing (by shared words, no model, any dim). "
        "Changing the model embeds the index again.")
    dim: int = setting(384, "Vector width stored in the index; a longer answer is truncated, a shorter one is an error.",
                       minimum=8)
    batch_size: int = setting(256, "Inputs sent per embedding request at most.", minimum=1)
    batch_tokens: int = setting(8192, "Estimated tokens (4 characters of ASCII, 1 of other text) per embedding "
                                "request at most; a longer input goes alone.", minimum=1)
    workers: int = setting(
        1, "Worker processes embedding the index with the built-in multilingual-e5-small (one core each; "
        "searches embed their query in the server process).", minimum=1)
    max_input_chars: int = setting(8000, "Each input is cut to this many characters before it is sent.",
                                   minimum=16)
    query_prefix: str = setting(
        "", "Put before a search's text when it is embedded, for models trained with prefixes ('query: ' for "
        "e5, 'search_query: ' for nomic-embed); the built-in model adds its own.")
    passage_prefix: str = setting(
        "", "Put before each indexed text when it is embedded ('passage: ' for e5, 'search_document: ' for "
        "nomic-embed). Changing either prefix embeds the index again.")
    similarity_range: str = setting(
        "auto", "FLOOR,CEILING: the model's cosine similarity of unrelated texts (a vector hit at or below it "
        "scores 0 and is left out) and of closely related ones (scores 1; linear in between), e.g. 0.8,0.92. "
        "auto: the built-in model's own (e5 0.82,0.93; hashing 0.10,0.54), 0,1 for an endpoint's model; "
        "bench/search_fusion.py measures a model's on a labelled set.",
        check=(lambda value: value == "auto" or parse_similarity_range(value) is not None,
               "auto or two numbers FLOOR,CEILING with -1 <= FLOOR < CEILING <= 1"))
    timeout_seconds: float = setting(30.0, "Deadline of one attempt (connect, send, full answer).", positive=True)
    call_deadline_seconds: float = setting(
        40.0, "Deadline of one call across all its attempts and backoff sleeps (below [cascade] "
        "embed_timeout_seconds, so a stalled endpoint opens its circuit).", positive=True
    )


@dataclass(frozen=True)
class RerankSettings(_ProviderSettings):
    provider: str = setting("none", "none (no rerank) or openai (POST {base_url}/rerank, vLLM/Jina/Cohere shape).",
                            choices=("none", "openai", "vllm"))
    batch_size: int = setting(50, "Documents sent per rerank request.", minimum=1)
    timeout_seconds: float = setting(30.0, "Deadline of one attempt (connect, send, full answer).", positive=True)


@dataclass(frozen=True)
class KnowledgeSettings:
    max_upload_bytes: int = setting(52_428_800, "Largest accepted upload, enforced while the body streams (413).",
                                    minimum=1)
    sync_wait_seconds: float = setting(
        20.0, "How long an upload waits for its extraction before answering 202 with a task.", minimum=0
    )
    dedupe: str = setting("content", "content: the same bytes in the same scope return the existing document; "
                          "none: always create.", choices=("content", "none"))
    idempotency_ttl_seconds: float = setting(86_400.0, "How long an Idempotency-Key answer is replayed.",
                                             positive=True)


@dataclass(frozen=True)
class KnowledgeSearchSettings:
    recall_n: int = setting(200, "Candidates recalled per method before fusion.", minimum=1)
    rerank_n: int = setting(50, "Top candidates sent to the reranker when one is configured.", minimum=1)
    top_k_cap: int = setting(100, "Largest top_k a search may ask for (EverOS allows 1 to 100).", minimum=1,
                           maximum=100)
    fusion: str = setting(
        "weighted", "How hybrid search merges keyword and vector hits: weighted, keyword_weight times the "
        "keyword score plus the rest times the vector score (both calibrated to [0, 1], so score_threshold "
        "means the same for every query); rrf, reciprocal rank fusion (scores relative to the best possible).",
        choices=("weighted", "rrf"))
    keyword_weight: str = setting(
        "auto", "Weight of the keyword score in weighted hybrid search, 0 to 1 (the vector score gets the rest). "
        "auto: the embedder's own, chosen on the labelled set in bench/search_set with bench/search_fusion.py "
        "(e5 0.3; hashing 0.7; 0.5 for an endpoint's model).",
        check=(lambda value: value == "auto" or parse_weight(value) is not None, "auto or a number from 0 to 1"))
    keyword_half_score: float = setting(
        8.0, "The BM25 score that a keyword hit's score of 0.5 stands for (score = bm25 / (bm25 + this)).",
        positive=True)
    rrf_k: int = setting(60, "The k of reciprocal rank fusion (fusion = rrf).", minimum=1)
    facts_per_hit: int = setting(3, "Best-matching atomic facts listed with each hit.", minimum=0)


@dataclass(frozen=True)
class SQLiteSettings:
    journal_mode: str = setting("WAL", "SQLite journal mode.", choices=("WAL", "DELETE", "TRUNCATE"))
    synchronous: str = setting("NORMAL", "SQLite synchronous pragma.", choices=("OFF", "NORMAL", "FULL", "EXTRA"))
    busy_timeout_ms: int = setting(5000, "How long a statement waits for a lock inside its thread.", minimum=0)
    cache_size_kb: int = setting(2048, "SQLite page cache per connection.", minimum=0)
    statement_timeout_ms: int = setting(
        10_000, "A statement running longer is interrupted inside its thread (progress handler).", minimum=1
    )
    call_timeout_seconds: float = setting(15.0, "Deadline of one SQLite call as seen from the event loop.",
                                          positive=True)


@dataclass(frozen=True)
class LanceDBSettings:
    read_consistency_seconds: float = setting(
        0.0, "How stale a read may be; 0 reads the latest committed version.", minimum=0
    )
    index_cache_size_bytes: int = setting(16_777_216, "LanceDB index cache.", minimum=0)
    call_timeout_seconds: float = setting(60.0, "Deadline of one LanceDB call as seen from the event loop.",
                                          positive=True)
    vector_index_min_rows: int = setting(
        20_000, "Topics past which vector search uses an index (IVF_FLAT, trained again when the topics "
        "double) instead of a scan of every vector; 0 never.", minimum=0)


@dataclass(frozen=True)
class IngestSettings:
    workers: int = setting(2, "Extract workers leasing ingest jobs.", minimum=1)
    max_pending: int = setting(1000, "Queued ingest jobs before uploads get 429 QUEUE_SATURATED.", minimum=1)
    max_attempts: int = setting(3, "Attempts before a job is dead with its last error.", minimum=1)
    lease_seconds: float = setting(60.0, "Lease of a running job; renewed while it works.", positive=True)
    job_timeout_seconds: float = setting(600.0, "Deadline of one attempt at one job.", positive=True)
    retry_backoff_seconds: float = setting(5.0, "Delay before a failed job is leased again.", minimum=0)
    reaper_interval_seconds: float = setting(5.0, "How often expired leases are returned to the queue.",
                                             positive=True)
    conversion_workers: int = setting(
        1, "Worker processes converting PDF, DOCX, PPTX, XLSX, HTML and EPUB uploads to markdown.", minimum=1)
    conversion_timeout_seconds: float = setting(
        60.0, "Deadline of one conversion or built-in extraction in a worker process; past it the worker "
        "process is killed and the job fails with WORKER_TIMEOUT.", positive=True)
    conversion_memory_mb: int = setting(
        2048, "Memory (address space, MiB) one conversion or extraction may add to its worker process; above "
        "it the job fails with WORKER_OUT_OF_MEMORY.", minimum=256)


@dataclass(frozen=True)
class CascadeSettings:
    workers: int = setting(2, "Index workers leasing index rows.", minimum=1)
    rebuild_workers: int = setting(32, "Index attempts at once in `everos cascade rebuild`: the index writer "
                                   "merges the documents they hand it into one commit.", minimum=1)
    llm_facts: str = setting(
        "off", "Who writes a topic's atomic facts when [llm] names a model: off, the built-in sentence "
        "splitter (no model time); with-extraction, the model in the extraction answer (no extra call, "
        "more answer tokens), topics without them (edited later) in batched calls; batched, calls over "
        "many topics at once, in the background. A failed or late answer falls back to the splitter.",
        choices=("off", "with-extraction", "batched"))
    facts_per_topic: int = setting(8, "Most atomic facts kept per topic (the model's or the splitter's).",
                                   minimum=1)
    max_attempts: int = setting(5, "Attempts before an index row is dead with its last error.", minimum=1)
    lease_seconds: float = setting(120.0, "Lease of an index row being worked on.", positive=True)
    row_timeout_seconds: float = setting(120.0, "Deadline of one attempt at one index row.", positive=True)
    embed_timeout_seconds: float = setting(
        45.0, "Deadline of the embedding phase of one attempt; past it (or when the embedding endpoint fails) "
        "the document is indexed for keyword search with its vectors pending. Capped at 40 % of "
        "row_timeout_seconds.", positive=True)
    reembed_interval_seconds: float = setting(
        30.0, "How often documents with pending vectors are queued again while the embedding endpoint's "
        "circuit is not open (one probe document while it is half-open).", positive=True)
    retry_backoff_seconds: float = setting(5.0, "Delay before a failed row is leased again.", minimum=0)
    watch: bool = setting(True, "Watch the root for markdown edits.")
    watch_debounce_ms: int = setting(500, "Quiet time after an edit before it is queued.", minimum=0)
    scan_interval_seconds: float = setting(30.0, "How often the scanner reconciles markdown with the index.",
                                           positive=True)
    full_scan_interval_seconds: float = setting(
        600.0, "How often a scan stats every markdown file (the others look only where a directory's mtime "
        "moved: an edit in place the watcher missed waits for this).", positive=True)
    optimize_interval_seconds: float = setting(
        60.0, "How often LanceDB tables are optimized while old versions may remain.", positive=True)
    optimize_after_commits: int = setting(
        32, "Index commits after which the tables are optimized (compacted, new rows folded into the "
        "indexes); each commit adds files that searches open.", minimum=1)
    optimize_after_rows: int = setting(
        20_000, "Rows written after which the tables are optimized; rows outside the indexes are "
        "searched by a scan.", minimum=1)
    cleanup_older_than_seconds: float = setting(
        60.0, "LanceDB versions older than this are removed (keep it above [lancedb] call_timeout_seconds).",
        minimum=0)
    attempts_in_flight: int = setting(
        32, "Index attempts of all workers at once: a worker that has handed a document's rows to the "
        "index writer starts on the next while they wait for their commit, so one commit takes many "
        "documents.", minimum=1)
    writer_batch_rows: int = setting(5000, "Most rows (topics and facts) in one LanceDB commit.", minimum=1)
    writer_queue_batches: int = setting(16, "Batches waiting for the index writer before workers wait.", minimum=1)
    release_memory_after_seconds: float = setting(
        5.0, "Idle seconds after its last write or optimize before the index writer gives the memory freed "
        "meanwhile back to the system (malloc_trim); 0 never.", minimum=0)
    lag_documents: int = setting(
        300, "Documents waiting for their index (uploaded or edited, not yet searchable) above which the index "
        "lags: uploads are still accepted, but /health's cascade block says lagging, upload answers carry "
        "X-Everos-Index-Lag, and everos ingest waits before sending more. 0: never lags.", minimum=0)


@dataclass(frozen=True)
class LimitsSettings:
    sqlite_threads: int = setting(4, "Worker threads for SQLite calls.", minimum=1)
    lancedb_threads: int = setting(2, "Worker threads for LanceDB calls.", minimum=1)
    file_threads: int = setting(4, "Worker threads for file I/O.", minimum=1)
    cpu_threads: int = setting(2, "Worker threads for parsing, tokenizing and other CPU work.", minimum=1)
    malloc_arenas: int = setting(2, "glibc malloc arenas at most; each keeps memory its threads freed "
                                 "(0: glibc's default, 8 per core).", minimum=0)
    gil_switch_interval_ms: float = setting(
        1.0, "How long a thread running Python keeps the GIL while another wants it (sys.setswitchinterval; Python's "
        "default is 5): the event loop waits up to this for the GIL after each of its system calls while a worker "
        "thread computes. Set by everos server start and everos mcp.", positive=True, maximum=100.0)
    loop_lag_probe_interval_seconds: float = setting(
        0.1, "How often the event-loop lag probe wakes up.", positive=True
    )
    worker_restart_limit: int = setting(
        5, "Crashes of one worker within worker_restart_window_seconds before the server stops.", minimum=1
    )
    worker_restart_window_seconds: float = setting(60.0, "Window over which worker crashes are counted.",
                                                   positive=True)


@dataclass(frozen=True)
class Config:
    """Every setting of one everos root. Frozen: build a new one to change it."""

    api: ApiSettings = field(default_factory=ApiSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    llm: LLMSettings = field(default_factory=LLMSettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    rerank: RerankSettings = field(default_factory=RerankSettings)
    knowledge: KnowledgeSettings = field(default_factory=KnowledgeSettings)
    knowledge_search: KnowledgeSearchSettings = field(default_factory=KnowledgeSearchSettings)
    sqlite: SQLiteSettings = field(default_factory=SQLiteSettings)
    lancedb: LanceDBSettings = field(default_factory=LanceDBSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    cascade: CascadeSettings = field(default_factory=CascadeSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)


# TOML section name -> Config attribute. Dotted names are nested tables, as in EverOS.
SECTIONS: dict[str, str] = {
    "api": "api",
    "memory": "memory",
    "llm": "llm",
    "embedding": "embedding",
    "rerank": "rerank",
    "knowledge": "knowledge",
    "knowledge.search": "knowledge_search",
    "sqlite": "sqlite",
    "lancedb": "lancedb",
    "ingest": "ingest",
    "cascade": "cascade",
    "limits": "limits",
}

# EverOS 1.x sections for its conversation-memory features: accepted so its files load, not used.
IGNORED_SECTIONS = frozenset({
    "multimodal", "boundary_detection", "memorize", "clustering", "search", "decider", "index",
    "milvus", "observability",
})

# EverOS 1.x keys of sections we do use, whose meaning everos does not have: accepted, not used.
RETIRED_KEYS: dict[str, dict[str, str]] = {
    "llm": {"max_input_tokens": "replaced by [llm] context_tokens, which sizes the extraction batches"},
}
"""everos settings that no longer exist: files that still set them load, and the load says what
replaced each."""

IGNORED_KEYS: dict[str, frozenset[str]] = {
    "sqlite": frozenset({"foreign_keys", "temp_store", "journal_size_limit_bytes", "pool_size", "max_overflow",
                         "pool_timeout_seconds", "pool_recycle_seconds", "pool_pre_ping"}),
    "lancedb": frozenset({"metadata_cache_size_bytes", "vector_index_min_rows"}),
    "embedding": frozenset({"dimensions", "query_max_concurrent"}),
    "knowledge.search": frozenset({"mass_top_m", "lambda", "lam"}),
}


def section_class(section: str) -> type:
    """The dataclass of TOML section ``section`` (``"knowledge.search"`` -> :class:`KnowledgeSearchSettings`)."""
    return type(getattr(Config(), SECTIONS[section]))
