"""Model providers that cannot hang: OpenAI-compatible chat, embeddings and rerank clients, the
built-in embedder, and the one attempt policy (deadlines, retries, budgets, circuit breaker) that
every endpoint uses (guarantees G3, G4, G11)."""

from everos._exports import claim_public_names
from everos.providers._answers import (
    AnswerError,
    DimensionMismatch,
    chat_content,
    fit_dimension,
    parse_embeddings,
    parse_json_object,
    parse_rerank,
)
from everos.providers._builtin_embedder import BuiltinEmbedder
from everos.providers._e5_embedder import E5_MODEL, E5Embedder
from everos.providers._circuit import Admission, CircuitBreaker, CircuitState
from everos.providers._errors import (
    CircuitOpen,
    EmbeddingDimensionError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
)
from everos.providers._openai import ChatClient, EmbeddingClient, RerankClient
from everos.providers._policy import (
    AttemptPolicy,
    Budget,
    Budgets,
    backoff_seconds,
    is_retryable_exception,
    is_retryable_status,
    parse_retry_after,
    retry_delay_seconds,
)
from everos.providers._registry import (
    Embedder,
    Providers,
    circuit_state,
    make_chat,
    make_embedder,
    make_reranker,
)
from everos.providers._usage import ModelUsage, counting_usage, record_usage

__all__ = [
    "Admission",
    "AnswerError",
    "AttemptPolicy",
    "Budget",
    "Budgets",
    "BuiltinEmbedder",
    "E5_MODEL",
    "E5Embedder",
    "ChatClient",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitState",
    "DimensionMismatch",
    "Embedder",
    "EmbeddingClient",
    "EmbeddingDimensionError",
    "ModelUsage",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderResponseError",
    "ProviderTimeout",
    "Providers",
    "RerankClient",
    "backoff_seconds",
    "chat_content",
    "circuit_state",
    "counting_usage",
    "fit_dimension",
    "is_retryable_exception",
    "is_retryable_status",
    "make_chat",
    "make_embedder",
    "make_reranker",
    "parse_embeddings",
    "parse_json_object",
    "parse_rerank",
    "parse_retry_after",
    "record_usage",
    "retry_delay_seconds",
]

claim_public_names(globals())
