"""One configuration object, loaded with EverOS's precedence and validated at startup.

Precedence, lowest first: the built-in defaults below < ``<root>/everos.toml`` <
``EVEROS_<SECTION>__<KEY>`` environment variables < command-line flags. Every setting is declared
once here, with its default, its unit (in its name) and its help text; ``everos init`` renders the
commented template from these declarations and ``everos config show`` prints the effective values
with where each came from, so the docs cannot drift from the code.

A bad value stops startup with one :class:`~everos.errors.ConfigError` naming the key, the file or
variable it came from, and what is allowed. Sections and keys that EverOS 1.x has but everos does not
use (its conversation-memory features) are accepted and reported as ignored, so an existing EverOS
``everos.toml`` loads as it is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from everos.errors import ConfigError

__all__ = [
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
    "LoadedConfig",
    "MemorySettings",
    "RerankSettings",
    "SQLiteSettings",
    "config_path",
    "load_config",
    "render_template",
    "resolve_root",
]

CONFIG_FILENAME = "everos.toml"


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
    host: str = setting("127.0.0.1", "Address the HTTP server binds to. There is no auth: keep it on loopback.")
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
    log_level: str = setting(
        "INFO", "Log level.", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )
    log_format: str = setting("text", "Log lines as text (key=value fields) or json (one object per line).",
                              choices=("text", "json"))
    cors_origins: list = setting(
        [], "Browser origins allowed to call the API (CORS), e.g. [\"http://localhost:3000\"]; empty allows none.",
        check=(lambda origins: all(isinstance(o, str) and _ORIGIN_RE.fullmatch(o) for o in origins),
               "a list of origins such as 'http://localhost:3000' (scheme, host and port; no path, no '*')"))


_ORIGIN_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]+")


def is_time_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows (``UTC``, ``Europe/Berlin``)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


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
    max_input_tokens: int = setting(
        8000, "Token estimate per extraction batch; longer documents are split.", minimum=256
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
    dim: int = setting(384, "Vector width stored in the index; a longer answer is truncated, a shorter one is an error.",
                       minimum=8)
    batch_size: int = setting(32, "Inputs sent per embedding request.", minimum=1)
    max_input_chars: int = setting(8000, "Each input is cut to this many characters before it is sent.",
                                   minimum=16)
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
    rrf_k: int = setting(60, "The k of reciprocal rank fusion in hybrid search.", minimum=1)
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


@dataclass(frozen=True)
class CascadeSettings:
    workers: int = setting(2, "Index workers leasing index rows.", minimum=1)
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
    optimize_interval_seconds: float = setting(60.0, "How often LanceDB tables are compacted.", positive=True)
    cleanup_older_than_seconds: float = setting(
        60.0, "LanceDB versions older than this are removed (keep it above [lancedb] call_timeout_seconds).",
        minimum=0)
    writer_batch_rows: int = setting(500, "Rows per LanceDB write batch.", minimum=1)
    writer_queue_batches: int = setting(16, "Batches waiting for the index writer before workers wait.", minimum=1)


@dataclass(frozen=True)
class LimitsSettings:
    sqlite_threads: int = setting(4, "Worker threads for SQLite calls.", minimum=1)
    lancedb_threads: int = setting(2, "Worker threads for LanceDB calls.", minimum=1)
    file_threads: int = setting(4, "Worker threads for file I/O.", minimum=1)
    cpu_threads: int = setting(2, "Worker threads for parsing, tokenizing and other CPU work.", minimum=1)
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
IGNORED_KEYS: dict[str, frozenset[str]] = {
    "sqlite": frozenset({"foreign_keys", "temp_store", "journal_size_limit_bytes", "pool_size", "max_overflow",
                         "pool_timeout_seconds", "pool_recycle_seconds", "pool_pre_ping"}),
    "lancedb": frozenset({"metadata_cache_size_bytes", "vector_index_min_rows"}),
    "embedding": frozenset({"dimensions", "query_max_concurrent"}),
    "knowledge.search": frozenset({"mass_top_m", "lambda", "lam"}),
}


@dataclass(frozen=True)
class LoadedConfig:
    """The effective config, the root it belongs to, and where every value came from."""

    root: Path
    config: Config
    sources: Mapping[tuple[str, str], str]
    ignored: tuple[str, ...] = ()

    def source_of(self, section: str, key: str) -> str:
        return self.sources.get((section, key), "default")


def resolve_root(flag: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The memory root: ``--root``, else ``EVEROS_ROOT``, else ``~/.everos``."""
    environ = os.environ if environ is None else environ
    if flag:
        return Path(flag).expanduser().resolve()
    if environ.get("EVEROS_ROOT"):
        return Path(environ["EVEROS_ROOT"]).expanduser().resolve()
    return (Path.home() / ".everos").resolve()


def config_path(root: Path) -> Path:
    return root / CONFIG_FILENAME


def _section_class(section: str) -> type:
    return type(getattr(Config(), SECTIONS[section]))


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _describe_allowed(f: dataclasses.Field, typ: type) -> str:
    meta = f.metadata
    if meta.get("choices"):
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if meta.get("check"):
        return meta["check"][1]
    name = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
            dict: "a table", list: "a list"}[typ]
    if meta.get("positive"):
        return f"{name} greater than 0"
    low, high = meta.get("minimum"), meta.get("maximum")
    if low is not None and high is not None:
        return f"{name} from {low:g} to {high:g}"
    if low is not None:
        return f"{name} >= {low:g}"
    if high is not None:
        return f"{name} <= {high:g}"
    return name


def _check_value(section: str, key: str, value: Any, f: dataclasses.Field, typ: type, origin: str) -> Any:
    """Validate one value from TOML or an already-parsed environment string."""
    ok: bool
    if typ is bool:
        ok = isinstance(value, bool)
    elif typ is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
    else:
        ok = isinstance(value, typ)
    meta = f.metadata
    if ok and meta.get("choices") and value not in meta["choices"]:
        ok = False
    if ok and meta.get("positive") and not value > 0:
        ok = False
    if ok and meta.get("minimum") is not None and value < meta["minimum"]:
        ok = False
    if ok and meta.get("maximum") is not None and value > meta["maximum"]:
        ok = False
    if ok and meta.get("check") and not meta["check"][0](value):
        ok = False
    if not ok:
        raise ConfigError(
            f"[{section}] {key} = {value!r} from {origin} is not allowed: expected {_describe_allowed(f, typ)}."
        )
    return value


def _parse_env_value(raw: str, typ: type) -> Any:
    """Turn an environment string into the setting's type; leave it as-is when it does not parse."""
    text = raw.strip()
    if typ is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        return raw
    if typ is int:
        try:
            return int(text)
        except ValueError:
            return raw
    if typ is float:
        try:
            return float(text)
        except ValueError:
            return raw
    if typ in (dict, list):
        try:
            return json.loads(text)
        except ValueError:
            return raw
    return raw


def _env_target(var: str) -> tuple[str, str] | None:
    """Map ``EVEROS_KNOWLEDGE__SEARCH__RECALL_N`` to ``("knowledge.search", "recall_n")``."""
    if not var.startswith("EVEROS_") or "__" not in var:
        return None
    parts = var[len("EVEROS_"):].lower().split("__")
    for cut in range(len(parts) - 1, 0, -1):
        section = ".".join(parts[:cut])
        key = "__".join(parts[cut:])
        if section in SECTIONS or section in IGNORED_SECTIONS:
            return section, key
    return parts[0], "__".join(parts[1:])


def _flatten_toml(data: Mapping[str, Any], origin: str) -> dict[str, dict[str, Any]]:
    """Split a parsed TOML document into ``{section: {key: value}}`` (nested tables dotted)."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{name} = {table!r} in {origin} is not inside a section; put it under [api], [llm], ...")
        for sub in list(table):
            dotted = f"{name}.{sub}"
            if isinstance(table[sub], dict) and dotted in SECTIONS:
                out[dotted] = dict(table[sub])
        out[name] = {k: v for k, v in table.items() if f"{name}.{k}" not in SECTIONS}
    return out


def load_config(
    root: Path,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[tuple[str, str], Any] | None = None,
    require_file: bool = True,
) -> LoadedConfig:
    """Load ``<root>/everos.toml``, apply the environment and then ``overrides`` (CLI flags).

    Raises:
        ConfigError: the file is missing (when ``require_file``), unreadable or not TOML, or any key
            is unknown or has a value that is not allowed. The message names the key, where the
            value came from and what is allowed.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    sources: dict[tuple[str, str], str] = {}
    ignored: list[str] = []
    hints = {s: get_type_hints(_section_class(s)) for s in SECTIONS}

    path = config_path(root)
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc.__class__.__name__}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        for section, table in _flatten_toml(data, str(path)).items():
            if section in IGNORED_SECTIONS:
                ignored.append(f"[{section}] in {path} (an EverOS memory feature everos does not serve)")
                continue
            if section not in SECTIONS:
                if not table and any(s.startswith(section + ".") for s in SECTIONS):
                    continue
                raise ConfigError(
                    f"unknown section [{section}] in {path}; known sections: "
                    + ", ".join(f"[{s}]" for s in SECTIONS)
                )
            known = _fields(_section_class(section))
            for key, value in table.items():
                if key in IGNORED_KEYS.get(section, ()):
                    ignored.append(f"[{section}] {key} in {path} (EverOS setting with no meaning in everos)")
                    continue
                if key not in known:
                    raise ConfigError(
                        f"unknown key [{section}] {key} in {path}; keys of [{section}]: " + ", ".join(known)
                    )
                values[section][key] = _check_value(section, key, value, known[key], hints[section][key], str(path))
                sources[(section, key)] = str(path)
    elif require_file:
        raise ConfigError(f"no {CONFIG_FILENAME} in {root}; run `everos init --root {root}` first")

    for var in sorted(environ):
        target = _env_target(var)
        if target is None:
            continue
        section, key = target
        if section in IGNORED_SECTIONS or key in IGNORED_KEYS.get(section, ()):
            ignored.append(f"{var} (EverOS setting with no meaning in everos)")
            continue
        if section not in SECTIONS:
            raise ConfigError(f"unknown section in environment variable {var}; known sections: " + ", ".join(SECTIONS))
        known = _fields(_section_class(section))
        if key not in known:
            raise ConfigError(f"unknown key in environment variable {var}; keys of [{section}]: " + ", ".join(known))
        typ = hints[section][key]
        value = _parse_env_value(environ[var], typ)
        values[section][key] = _check_value(section, key, value, known[key], typ, f"environment variable {var}")
        sources[(section, key)] = f"env {var}"

    for (section, key), value in (overrides or {}).items():
        known = _fields(_section_class(section))
        values[section][key] = _check_value(section, key, value, known[key], hints[section][key], "the command line")
        sources[(section, key)] = "command line"

    config = Config(**{SECTIONS[s]: _section_class(s)(**kv) for s, kv in values.items()})
    return LoadedConfig(root=root, config=config, sources=sources, ignored=tuple(ignored))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def iter_settings(config: Config):
    """Yield ``(section, key, value, field)`` for every setting, in declaration order."""
    for section, attr in SECTIONS.items():
        section_value = getattr(config, attr)
        for f in dataclasses.fields(section_value):
            yield section, f.name, getattr(section_value, f.name), f


def display_value(value: Any, f: dataclasses.Field) -> str:
    """The value as ``config show`` prints it; secrets are masked."""
    if f.metadata.get("secret") and value:
        return json.dumps(value[:2] + "***" if len(value) > 8 else "***")
    return _toml_value(value)


def render_template(config: Config | None = None) -> str:
    """The commented ``everos.toml`` that ``everos init`` writes: every section and key, each with
    its meaning, allowed values and default. It parses back to ``config`` (defaults when None)."""
    config = config or Config()
    defaults = Config()
    lines = [
        "# everos configuration. Every key is shown with its default; edit what you need.",
        "# Precedence: defaults < this file < EVEROS_<SECTION>__<KEY> environment < command-line flags.",
        "# `everos config show` prints the effective values and where each came from.",
        "",
    ]
    current = None
    hints_cache: dict[str, dict[str, Any]] = {}
    for section, key, value, f in iter_settings(config):
        if section != current:
            if current is not None:
                lines.append("")
            lines.append(f"[{section}]")
            current = section
            hints_cache[section] = get_type_hints(_section_class(section))
        default = getattr(getattr(defaults, SECTIONS[section]), key)
        allowed = _describe_allowed(f, hints_cache[section][key])
        lines.append(f"# {f.metadata['help']} Allowed: {allowed}. Default: {_toml_value(default)}.")
        lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    return "\n".join(lines)
