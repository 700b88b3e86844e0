"""Prometheus metrics at ``/metrics``, answered like ``/health``: before any middleware, lock or
database (guarantee G2), so a scrape is cheap whatever the server is doing.

Two kinds of series, both in the text exposition format of ``prometheus-client`` (the reference
client: pure Python, no dependencies, and its parser is what the tests read the page with):

- **Events**, counted where they happen, in :data:`EVENTS` (one registry per process, so the
  counters are monotonic for the life of the process): HTTP requests by method, route template
  and status with their latency; event-loop lag; model calls, attempts and their outcomes, and
  tokens, per endpoint kind (``llm``, ``embedding``, ``rerank``); index writer commits, their
  size and latency.
- **State**, read at scrape time from the :class:`~everos.status.StatusBoard` snapshot that
  ``/health`` answers from (no SQL: the queues' monitors refresh their blocks in the background):
  ingest and cascade queue depth by state, oldest lease and queue ages, dead rows, documents by
  index status, whether the index lags and its bound, circuit state and in-flight attempts per endpoint, index rows per table, worker
  restarts; and the process: resident memory, open files, threads, CPU.

Labels are bounded: route templates (``/api/v1/knowledge/documents/<doc_id>``), never raw paths;
endpoint kinds, never URLs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from everos.status import StatusBoard

__all__ = [
    "EVENTS",
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "INDEX_COMMIT_OPERATIONS",
    "INDEX_COMMIT_SECONDS",
    "LOOP_LAG",
    "MODEL_ATTEMPTS",
    "MODEL_CALLS",
    "MODEL_CALL_SECONDS",
    "MODEL_TOKENS",
    "MetricsApp",
    "endpoint_kind",
    "render",
    "server_registry",
]

EVENTS = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_MODEL_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

HTTP_REQUESTS = Counter("everos_http_requests", "HTTP requests answered, by method, route template and status.",
                        ["method", "route", "status"], registry=EVENTS)
HTTP_LATENCY = Histogram("everos_http_request_duration_seconds", "Time to answer an HTTP request.",
                         ["method", "route"], buckets=_LATENCY_BUCKETS, registry=EVENTS)
LOOP_LAG = Histogram("everos_event_loop_lag_seconds", "Event-loop lag measured by the lag probe.",
                     buckets=_LAG_BUCKETS, registry=EVENTS)
MODEL_CALLS = Counter("everos_model_calls", "Model calls (all their attempts), by endpoint kind and outcome.",
                      ["endpoint", "outcome"], registry=EVENTS)
MODEL_ATTEMPTS = Counter("everos_model_attempts", "Model attempts, by endpoint kind and outcome "
                         "(ok, timeout, retried, failed).", ["endpoint", "outcome"], registry=EVENTS)
MODEL_CALL_SECONDS = Histogram("everos_model_call_duration_seconds", "Time of one model call, retries included.",
                               ["endpoint"], buckets=_MODEL_BUCKETS, registry=EVENTS)
MODEL_TOKENS = Counter("everos_model_tokens", "Tokens the model endpoints reported, by kind (prompt, completion).",
                       ["endpoint", "kind"], registry=EVENTS)
INDEX_COMMIT_SECONDS = Histogram("everos_index_commit_duration_seconds", "Time of one index writer commit.",
                                 buckets=_LATENCY_BUCKETS, registry=EVENTS)
INDEX_COMMIT_OPERATIONS = Histogram("everos_index_commit_operations", "Document operations merged into one commit.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=EVENTS)

_CIRCUIT_STATES = {"closed": 0, "half_open": 1, "half-open": 1, "open": 2}


def endpoint_kind(endpoint: str) -> str:
    """The bounded label of an endpoint name such as ``"llm http://127.0.0.1:8080/v1"``: ``llm``."""
    return endpoint.split(" ", 1)[0] or "unknown"


class BoardCollector:
    """The state series, read from one server's status board at scrape time."""

    def __init__(self, board: StatusBoard) -> None:
        self.board = board

    def collect(self) -> Iterator[Metric]:
        snapshot = self.board.snapshot()
        yield from _server(snapshot)
        yield from _queue("everos_ingest", "ingest jobs", snapshot.get("ingest") or {}, "counts")
        cascade = snapshot.get("cascade") or {}
        yield from _queue("everos_cascade", "index rows", cascade, "depth")
        yield _gauge("everos_cascade_lagging", "1 while more documents wait for their index (everos_cascade_documents"
                     "{index_status=\"pending\"}) than [cascade] lag_documents, else 0.",
                     1.0 if cascade.get("lagging") else 0.0)
        yield _gauge("everos_cascade_lag_documents", "[cascade] lag_documents: the documents waiting for their index "
                     "past which the index lags (0: never).", cascade.get("lag_documents"))
        yield from _labelled("everos_cascade_documents", "Documents by index status.", "index_status",
                             cascade.get("index_status") or {})
        yield from _providers(snapshot.get("providers") or {})
        yield from _index(snapshot.get("index") or {})
        yield _gauge("everos_process_threads", "Threads of the server process.", _threads())


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric([], float(value))
    return family


def _labelled(name: str, documentation: str, label: str, values: dict[str, Any]) -> Iterator[Metric]:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for key, value in values.items():
        if isinstance(value, (int, float)):
            family.add_metric([str(key)], float(value))
    yield family


def _server(snapshot: dict[str, Any]) -> Iterator[Metric]:
    state = GaugeMetricFamily("everos_server_state", "1 for the server's current state.", labels=["state"])
    for name in ("starting", "ready", "stopping"):
        state.add_metric([name], 1.0 if snapshot.get("state") == name else 0.0)
    yield state
    yield _gauge("everos_healthy", "1 when /health says healthy, else 0.", 1.0 if snapshot.get("healthy") else 0.0)
    yield _gauge("everos_uptime_seconds", "Seconds since the server started.", snapshot.get("uptime_s"))
    restarts = CounterMetricFamily("everos_worker_restarts", "Restarts of each supervised worker.",
                                   labels=["worker"])
    for worker, info in (snapshot.get("workers") or {}).items():
        restarts.add_metric([worker], float(info.get("restarts") or 0))
    yield restarts


def _queue(prefix: str, what: str, block: dict[str, Any], counts_key: str) -> Iterator[Metric]:
    yield from _labelled(f"{prefix}_queue", f"Queued {what} by state.", "state", block.get(counts_key) or {})
    yield _gauge(f"{prefix}_oldest_lease_age_seconds", f"Age of the oldest lease on {what}.",
                 block.get("oldest_lease_age_s"))
    lag = block.get("oldest_queued_age_s", block.get("lag_s"))
    yield _gauge(f"{prefix}_oldest_queued_age_seconds", f"Age of the oldest of the {what} waiting.", lag)


def _providers(block: dict[str, Any]) -> Iterator[Metric]:
    circuit = GaugeMetricFamily("everos_model_circuit_state", "Circuit breaker per endpoint: 0 closed, "
                                "1 half-open, 2 open.", labels=["endpoint"])
    in_flight = GaugeMetricFamily("everos_model_in_flight", "Attempts in flight per endpoint and budget.",
                                  labels=["endpoint", "budget"])
    waiting = GaugeMetricFamily("everos_model_waiting", "Calls waiting for a slot per endpoint and budget.",
                                labels=["endpoint", "budget"])
    for endpoint, info in block.items():
        if not isinstance(info, dict):
            continue
        state = (info.get("circuit") or {}).get("state")
        if state in _CIRCUIT_STATES:
            circuit.add_metric([endpoint], float(_CIRCUIT_STATES[state]))
        for budget, slots in (info.get("budgets") or {}).items():
            in_flight.add_metric([endpoint, budget], float(slots.get("in_flight", 0)))
            waiting.add_metric([endpoint, budget], float(slots.get("waiting", 0)))
    yield from (circuit, in_flight, waiting)


def _index(block: dict[str, Any]) -> Iterator[Metric]:
    yield from _labelled("everos_index_rows", "Rows per index table.", "table", block.get("rows") or {})
    yield _gauge("everos_index_pending_operations", "Document operations waiting for the index writer.",
                 block.get("pending_operations"))


def _threads() -> int | None:
    """Threads of this process, from ``/proc`` (None where there is none)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("Threads:")), None)
    except OSError:
        return None


def server_registry(board: StatusBoard) -> CollectorRegistry:
    """The state series of one server: its board, and the process (memory, open files, CPU)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BoardCollector(board))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The ``/metrics`` page: this server's state series, then the process's event series."""
    return generate_latest(registry) + generate_latest(EVENTS)


class MetricsApp:
    """Answers ``GET /metrics`` from the board and the event counters alone (G2)."""

    def __init__(self, board: StatusBoard) -> None:
        self.registry = server_registry(board)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            status, payload, kind = 405, b'{"error": {"code": "METHOD_NOT_ALLOWED", "message": "use GET"}}', \
                b"application/json"
        else:
            status, payload, kind = 200, render(self.registry), CONTENT_TYPE_LATEST.encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", kind), (b"cache-control", b"no-store"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else payload})
