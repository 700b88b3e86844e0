"""The fake server's HTTP answer to one request, given the faults that apply. No I/O.

Status faults win over everything but routing errors (404/405); then the API key is checked;
then the route answers (see ``_fake_answers`` for what each answer holds).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol

from everos.testing._fake_answers import chat_answer, embedding_vectors, rerank_results
from everos.testing._faults import Effects
from everos.testing._slots import estimate_tokens

__all__ = ["Answer", "build_answer", "error_answer", "json_answer"]


class _Traits(Protocol):
    model: str
    dim: int
    api_key: str | None
    supports_response_format: bool
    fence_json: bool


@dataclass
class Answer:
    """Status, JSON body bytes and extra headers of one answer. ``events``: a streamed chat
    answer's server-sent events (``body`` then holds the same answer unstreamed, for its usage)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    events: list[bytes] | None = None


def json_answer(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Answer:
    return Answer(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), headers or [])


def error_answer(
    status: int, message: str, headers: list[tuple[str, str]] | None = None, *, code: str | int | None = None
) -> Answer:
    """An OpenAI-style error body ``{"error": {message, type, code}}``."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return json_answer(status, {"error": {"message": message, "type": kind, "code": code or status}}, headers)


def build_answer(
    traits: _Traits,
    route: str,
    number: int,
    *,
    allowed_method: bytes | None,
    method: bytes,
    headers: dict[str, str],
    body: Any,
    effects: Effects,
) -> Answer:
    """The answer to request ``number`` of ``route`` (``allowed_method`` None: unknown route)."""
    if allowed_method is None:
        return error_answer(404, f"no route {route}")
    if method != allowed_method:
        return error_answer(405, f"use {allowed_method.decode()}")
    if effects.status_code is not None:
        extra = [("retry-after", effects.retry_after)] if effects.retry_after is not None else []
        return error_answer(effects.status_code, f"fake fault: HTTP {effects.status_code}", extra)
    if traits.api_key is not None and headers.get("authorization") != f"Bearer {traits.api_key}":
        return error_answer(401, "invalid api key", code="invalid_api_key")
    if route == "models":
        return json_answer(200, {"object": "list", "data": [{"id": traits.model, "object": "model"}]})
    if not isinstance(body, dict):
        return error_answer(400, "the body must be a JSON object")
    if effects.malformed_json and (effects.malformed_body or route != "chat"):
        return Answer(200, b'{"object": "list", "data": [{"broken')
    try:
        if route == "chat":
            return _chat(traits, number, body, effects)
        if route == "embeddings":
            return _embeddings(traits, body, effects)
        return _rerank(traits, number, body)
    except (KeyError, TypeError, ValueError) as exc:
        return error_answer(400, f"bad request: {exc}")


def _chat(traits: _Traits, number: int, body: dict[str, Any], effects: Effects) -> Answer:
    if "response_format" in body and not traits.supports_response_format:
        return error_answer(400, "response_format is not supported by this server", code="unsupported_response_format")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    content = json.dumps(chat_answer(messages), ensure_ascii=False)
    if effects.malformed_json:
        content = "Here is the JSON you asked for: {" + content[1 : len(content) // 2]
    elif traits.fence_json:
        content = f"```json\n{content}\n```"
    prompt_tokens = sum(estimate_tokens(_text(m.get("content"))) for m in messages if isinstance(m, dict))
    completion_tokens = estimate_tokens(content)
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
             "total_tokens": prompt_tokens + completion_tokens}
    model = body.get("model") or traits.model
    answer = json_answer(200, {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": usage,
    })
    if body.get("stream") is True:
        answer.events = _chat_events(f"chatcmpl-fake-{number}", model, content, usage)
    return answer


# Characters of content per streamed event (a few tokens, as a model server sends them).
_STREAM_CHARS = 48


def _chat_events(answer_id: str, model: str, content: str, usage: dict[str, int]) -> list[bytes]:
    """The server-sent events of a streamed chat answer: the role, the content in pieces, the
    finish reason with the usage (as llama-server and OpenAI with ``include_usage`` send it),
    then ``[DONE]``."""
    def event(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        chunk = {"id": answer_id, "object": "chat.completion.chunk", "created": 0, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        return b"data: " + json.dumps(chunk, ensure_ascii=False).encode("utf-8") + b"\n\n"

    events = [event({"role": "assistant", "content": ""})]
    events += [event({"content": content[i:i + _STREAM_CHARS]}) for i in range(0, len(content), _STREAM_CHARS)]
    events.append(event({}, "stop", usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


def _embeddings(traits: _Traits, body: dict[str, Any], effects: Effects) -> Answer:
    inputs = body["input"]
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    if not texts or not all(isinstance(text, str) for text in texts):
        raise ValueError("input must be a string or a non-empty list of strings")
    dim = effects.wrong_dim or int(body.get("dimensions") or traits.dim)
    data = [{"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(embedding_vectors(texts, dim))]
    tokens = sum(estimate_tokens(text) for text in texts)
    return json_answer(200, {
        "object": "list", "data": data, "model": body.get("model") or traits.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })


def _rerank(traits: _Traits, number: int, body: dict[str, Any]) -> Answer:
    query = body["query"]
    documents = [doc.get("text", "") if isinstance(doc, dict) else doc for doc in body["documents"]]
    if not isinstance(query, str) or not all(isinstance(doc, str) for doc in documents):
        raise ValueError("query and documents must be text")
    results = rerank_results(query, documents, body.get("top_n"))
    return json_answer(200, {"id": f"rerank-fake-{number}", "model": body.get("model") or traits.model,
                             "results": results, "usage": {"total_tokens": 0}})


def _text(content: Any) -> str:
    """A message's content as text (a list of parts is counted by its JSON)."""
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
