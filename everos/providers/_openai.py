"""Clients for OpenAI-compatible endpoints: chat (JSON answers), embeddings and rerank.

They work against llama-server, Ollama, vLLM, OpenAI and OpenRouter style servers. Each client owns
one ``httpx.AsyncClient`` (a connection pool) and one :class:`AttemptPolicy` (deadlines, retries,
budgets, circuit breaker). httpx's own timeouts are set generously, as a safety net only: the real
deadlines are the trio cancel scopes of the policy, and cancelling a scope closes the upstream
connection (stack notes §2), so a cancelled caller never leaves a request running upstream.

Answers are read with a size cap, and large ones are decoded in a worker thread (G5). Each call
sends the current request id (``logs.current_request_id``: the upload or search it is made for) as
``X-Request-Id``, so a proxy's or the model server's log can be matched with everos's.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import httpx
import trio

from everos.errors import ConfigError
from everos.logs import current_request_id
from everos.metrics import MODEL_TOKENS
from everos.providers._answers import (
    AnswerError,
    DimensionMismatch,
    chat_content,
    parse_embeddings,
    parse_json_object,
    parse_rerank,
)
from everos.providers._errors import (
    EmbeddingDimensionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
)
from everos.providers._policy import AttemptPolicy, Budget, parse_retry_after
from everos.providers._stream import EventStream
from everos.providers._usage import TokenRate, record_usage

if TYPE_CHECKING:
    from everos.config import EmbeddingSettings, LLMSettings, RerankSettings, _ProviderSettings

__all__ = ["ChatClient", "EmbeddingClient", "RerankClient"]

T = TypeVar("T")

MAX_ANSWER_BYTES = 64 * 1024 * 1024
# More tokens than this in one answer is not a count (and a float counter cannot add a huge integer).
MAX_REPORTED_TOKENS = 10**9
# Answers larger than this are decoded off the event loop (G5): json.loads of an embeddings
# batch takes milliseconds per megabyte.
_THREAD_DECODE_BYTES = 256 * 1024
_EXCERPT_CHARS = 500
# Fallback when a server rejects JSON mode: it says so with a 400 (or 422) naming the field.
_JSON_MODE_REJECTIONS = frozenset({400, 422})


class _OpenAIEndpoint:
    """One endpoint: its base URL, its connection pool and its attempt policy."""

    kind: ClassVar[str] = "model"

    def __init__(
        self,
        settings: _ProviderSettings,
        *,
        policy: AttemptPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        base_url = settings.base_url.strip().rstrip("/")
        if not base_url:
            raise ConfigError(
                f"[{self.kind}] provider = {settings.provider!r} needs base_url, "
                "e.g. http://127.0.0.1:8080/v1"
            )
        self.base_url = base_url
        self.model = settings.model
        self.endpoint = f"{self.kind} endpoint {base_url}"
        self._extra = dict(settings.extra)
        self.tokens = TokenRate()
        if policy is None:
            kwargs = {} if random is None else {"random": random}
            policy = AttemptPolicy.from_settings(settings, endpoint=self.endpoint, **kwargs)
        self.policy = policy
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        slots = settings.max_concurrent + settings.background_max_concurrent
        self._http = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_seconds + 30.0),
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
            transport=transport,
        )
        self._decode_limiter = trio.CapacityLimiter(2)
        self._closed = False

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent; shielded from cancellation, bounded to 5 s."""
        if self._closed:
            return
        self._closed = True
        with trio.move_on_after(5.0, shield=True):
            await self._http.aclose()

    def _body(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        # ``extra`` comes last: what the user configured wins (temperature, extra_body, …).
        return {"model": self.model, **fields, **self._extra}

    async def _post(self, path: str, body: Mapping[str, Any], decode: Callable[[Any], T]) -> T:
        """POST ``body`` as JSON, read the whole answer (capped) and ``decode`` its JSON.

        Raises ``ProviderHTTPError`` for a non-2xx status, ``ProviderResponseError`` for an
        answer that is too large, not JSON or rejected by ``decode``, and httpx transport errors
        as they come (the policy classifies them). Cancellation closes the connection.
        """
        async with self._http.stream("POST", self.base_url + path, json=body, headers=_request_headers()) as response:
            raw = await self._read_capped(response)
        if not 200 <= response.status_code < 300:
            raise self._http_error(response, raw)
        return await self._decode(lambda: _loads(raw, path), len(raw), decode)

    def _http_error(self, response: httpx.Response, raw: bytes) -> ProviderHTTPError:
        """The error of a non-2xx answer: its status, an excerpt of its body, its Retry-After."""
        return ProviderHTTPError(
            self.endpoint,
            response.status_code,
            body_excerpt=_excerpt(raw),
            retry_after_seconds=parse_retry_after(response.headers.get("retry-after")),
        )

    async def _decode(self, load: Callable[[], Any], size: int, decode: Callable[[Any], T]) -> T:
        """``decode(load())``, its usage counted, in a thread when the answer is large (``size``
        bytes). Raises ``ProviderResponseError`` (or ``EmbeddingDimensionError``) for an answer
        ``load`` or ``decode`` rejects."""
        def decode_answer() -> T:
            answer = load()
            tokens = count_usage(self.kind, answer)
            self.tokens.record(*tokens)
            record_usage(*tokens)
            return decode(answer)

        try:
            if size > _THREAD_DECODE_BYTES:
                # Pure CPU on private data: an abandoned thread is harmless.
                return await trio.to_thread.run_sync(decode_answer, limiter=self._decode_limiter,
                                                     abandon_on_cancel=True)
            return decode_answer()
        except DimensionMismatch as exc:
            raise EmbeddingDimensionError(self.endpoint, str(exc)) from None
        except AnswerError as exc:
            raise ProviderResponseError(self.endpoint, str(exc), content=exc.content) from None

    async def _post_streamed(self, path: str, body: Mapping[str, Any], decode: Callable[[Any], T],
                             idle_seconds: float) -> T:
        """POST ``body`` asking for a stream of server-sent events and ``decode`` the answer they
        add up to (``choices[0].message.content`` and the final ``usage``), as :meth:`_post` does
        an unstreamed one; a server that answers unstreamed is read as :meth:`_post` reads it.

        The attempt lasts as long as the model keeps writing: it fails (``ProviderTimeout``) only
        when no byte arrives for ``idle_seconds``, the first one included. Raises as :meth:`_post`
        does, and ``ProviderConnectionError`` for a stream that ends before the answer is
        complete. Cancellation closes the connection.
        """
        try:
            with trio.fail_after(idle_seconds) as idle:
                async with self._http.stream("POST", self.base_url + path, json=body,
                                             headers=_request_headers()) as response:
                    streamed = response.headers.get("content-type", "").startswith("text/event-stream")
                    if not (200 <= response.status_code < 300 and streamed):
                        idle.deadline = trio.current_time() + self.policy.attempt_timeout_seconds
                        raw = await self._read_capped(response)
                    else:
                        events = EventStream(self.endpoint, MAX_ANSWER_BYTES)
                        async for chunk in response.aiter_bytes():
                            idle.deadline = trio.current_time() + idle_seconds
                            events.feed(chunk)
        except trio.TooSlowError:
            raise ProviderTimeout(self.endpoint, f"the model sent nothing for {idle_seconds:g}s "
                                                 f"(streamed answer)") from None
        if not (200 <= response.status_code < 300):
            raise self._http_error(response, raw)
        if not streamed:
            return await self._decode(lambda: _loads(raw, path), len(raw), decode)
        answer = events.answer()
        return await self._decode(lambda: answer, events.size, decode)

    async def _read_capped(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes():
            total += len(chunk)
            if total > MAX_ANSWER_BYTES:
                raise ProviderResponseError(self.endpoint, f"answer larger than {MAX_ANSWER_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def count_usage(kind: str, answer: Any) -> tuple[int, int]:
    """Add the ``usage`` an OpenAI-compatible answer reports (prompt and completion tokens) to
    :data:`everos.metrics.MODEL_TOKENS`; return them (0 for what it does not report).
    Thread-safe; ignores a missing or malformed block (a count above :data:`MAX_REPORTED_TOKENS`
    is malformed)."""
    usage = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    counted = []
    for key, label in (("prompt_tokens", "prompt"), ("completion_tokens", "completion")):
        value = usage.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_REPORTED_TOKENS:
            MODEL_TOKENS.labels(kind, label).inc(value)
            counted.append(value)
        else:
            counted.append(0)
    return counted[0], counted[1]


class ChatClient(_OpenAIEndpoint):
    """Chat completions that answer one JSON object (``POST {base_url}/chat/completions``)."""

    kind = "llm"

    def __init__(self, settings: LLMSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._json_mode = True
        self._stream = settings.stream

    @property
    def json_mode_supported(self) -> bool:
        """False once the server rejected ``response_format``; later calls no longer send it."""
        return self._json_mode

    async def complete_json(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        budget: Budget | str,
        schema_hint: str | Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Ask the model and return the first JSON object of its answer (fenced or bare).

        Sends ``response_format={"type": "json_object"}``; if the server rejects that (400 or 422
        naming ``response_format``) the same attempt asks again without it, and the client
        remembers. ``schema_hint`` (text or a JSON example) is added to the system message.

        A checkpoint; blocks for at most the call deadline.

        Raises:
            ProviderResponseError: the answer holds no JSON object; ``content`` has the text, so
                the caller can ask for a repair.
            ProviderError: any other failure, see :meth:`AttemptPolicy.call`.

        Cancellation handling: the request in flight is abandoned and its connection closed.
        """
        request_messages = _with_schema_hint(messages, schema_hint)

        async def send(json_mode: bool) -> dict[str, Any]:
            body = self._chat_body(request_messages, json_mode)
            if self._stream:
                return await self._post_streamed("/chat/completions", body, _json_object,
                                                 self.policy.attempt_timeout_seconds)
            return await self._post("/chat/completions", body, _json_object)

        async def attempt() -> dict[str, Any]:
            if self._json_mode:
                try:
                    return await send(True)
                except ProviderHTTPError as exc:
                    if exc.status not in _JSON_MODE_REJECTIONS or "response_format" not in exc.body_excerpt.lower():
                        raise
                    self._json_mode = False
            return await send(False)

        # Streamed, an attempt runs while the model writes; its idle time is bounded instead.
        return await self.policy.call(attempt, budget=budget,
                                      attempt_timeout_seconds=math.inf if self._stream else None)

    def _chat_body(self, messages: list[dict[str, Any]], json_mode: bool) -> dict[str, Any]:
        fields: dict[str, Any] = {"messages": messages}
        if json_mode:
            fields["response_format"] = {"type": "json_object"}
        if self._stream:
            fields["stream"] = True
            fields["stream_options"] = {"include_usage": True}
        return self._body(fields)


class EmbeddingClient(_OpenAIEndpoint):
    """Embeddings (``POST {base_url}/embeddings``) of ``dim`` floats, in batches."""

    kind = "embedding"

    def __init__(self, settings: EmbeddingSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.dim = settings.dim
        self.batch_size = settings.batch_size
        self.batch_tokens = settings.batch_tokens
        self.max_input_chars = settings.max_input_chars
        self.prefixes = {"query": settings.query_prefix, "passage": settings.passage_prefix}

    async def embed(self, texts: Sequence[str], *, budget: Budget | str,
                    purpose: str = "passage") -> list[list[float]]:
        """One vector of ``dim`` floats per text, in order.

        Each text gets the ``query_prefix`` or ``passage_prefix`` of ``purpose`` and is then cut
        to ``max_input_chars`` (an empty text is sent as one space, which every
        server accepts) and sent in consecutive batches of at most ``batch_size`` texts and
        ``batch_tokens`` estimated tokens (a local model's time goes by tokens, a request's
        overhead by requests), one policy call per batch. Vectors longer than ``dim`` are cut and
        normalised again.

        A checkpoint; blocks for at most one call deadline per batch.

        Raises:
            EmbeddingDimensionError: the model's vectors are narrower than ``dim``.
            ProviderError: any other failure, see :meth:`AttemptPolicy.call`.

        Cancellation handling: the batch in flight is abandoned; finished batches are discarded.
        """
        if not texts:
            await trio.lowlevel.checkpoint()
            return []
        prefix = self.prefixes[purpose]
        vectors: list[list[float]] = []
        prepared = [(prefix + text)[: self.max_input_chars] or " " for text in texts]
        for batch in _batches(prepared, self.batch_size, self.batch_tokens):
            vectors.extend(await self.policy.call(functools.partial(self._embed_batch, batch), budget=budget))
        return vectors

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        body = self._body({"input": batch, "encoding_format": "float"})
        return await self._post(
            "/embeddings", body, lambda answer: parse_embeddings(answer, expected_count=len(batch), dim=self.dim)
        )


class RerankClient(_OpenAIEndpoint):
    """Rerank (``POST {base_url}/rerank``) in the vLLM / Jina / Cohere shape."""

    kind = "rerank"

    def __init__(self, settings: RerankSettings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.batch_size = settings.batch_size

    async def rerank(self, query: str, documents: Sequence[str], *, budget: Budget | str) -> list[tuple[int, float]]:
        """``(index into documents, relevance score)`` for every document, best first.

        Sends ``{model, query, documents, top_n}`` ``batch_size`` documents at a time; scores of
        one cross-encoder are comparable across batches, so the batches are merged by score.

        A checkpoint; blocks for at most one call deadline per batch.

        Raises:
            ProviderResponseError: the answer is not in a known shape or names unknown indexes.
            ProviderError: any other failure, see :meth:`AttemptPolicy.call`.

        Cancellation handling: the batch in flight is abandoned and its connection closed.
        """
        if not documents:
            await trio.lowlevel.checkpoint()
            return []
        ranked: list[tuple[int, float]] = []
        for start in range(0, len(documents), self.batch_size):
            batch = list(documents[start : start + self.batch_size])
            pairs = await self.policy.call(functools.partial(self._rerank_batch, query, batch), budget=budget)
            ranked.extend((start + index, score) for index, score in pairs)
        ranked.sort(key=lambda pair: (-pair[1], pair[0]))
        return ranked

    async def _rerank_batch(self, query: str, batch: list[str]) -> list[tuple[int, float]]:
        body = self._body({"query": query, "documents": batch, "top_n": len(batch)})
        return await self._post("/rerank", body, lambda answer: parse_rerank(answer, document_count=len(batch)))


def estimate_tokens(text: str) -> int:
    """Tokens in ``text`` as a BPE tokenizer roughly counts them: about four characters of ASCII
    text per token, and one token per other character (Chinese, Japanese, ...). At least 1. (The
    fake model server counts its tokens with it too.)"""
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return max(1, round(ascii_chars / 4) + (len(text) - ascii_chars))


def _batches(texts: list[str], max_texts: int, max_tokens: int) -> list[list[str]]:
    """Consecutive groups of ``texts``: at most ``max_texts`` each and ``max_tokens`` estimated
    tokens (a text over that alone)."""
    batches: list[list[str]] = []
    tokens = 0
    for text in texts:
        cost = estimate_tokens(text)
        if not batches or len(batches[-1]) >= max_texts or tokens + cost > max_tokens:
            batches.append([])
            tokens = 0
        batches[-1].append(text)
        tokens += cost
    return batches


def _request_headers() -> dict[str, str] | None:
    """The headers of one call: ``X-Request-Id`` when it is made for a request."""
    request_id = current_request_id()
    return None if request_id is None else {"X-Request-Id": request_id}


def _loads(raw: bytes, path: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        raise AnswerError(f"the answer to POST {path} is not JSON: {_excerpt(raw)!r}") from None


def _json_object(answer: Any) -> dict[str, Any]:
    content = chat_content(answer)
    return parse_json_object(content)


def _with_schema_hint(
    messages: Sequence[Mapping[str, Any]], schema_hint: str | Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    out = [dict(message) for message in messages]
    if schema_hint is None:
        return out
    hint_text = schema_hint if isinstance(schema_hint, str) else json.dumps(schema_hint, ensure_ascii=False)
    hint = f"Answer with one JSON object only, shaped like this:\n{hint_text}"
    # Some chat templates accept a single leading system message only: extend it when present.
    if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
        out[0]["content"] = f"{out[0]['content']}\n\n{hint}"
    else:
        out.insert(0, {"role": "system", "content": hint})
    return out


def _excerpt(raw: bytes) -> str:
    text = raw[: _EXCERPT_CHARS * 4].decode("utf-8", errors="replace")
    return " ".join(text.split())[:_EXCERPT_CHARS]
