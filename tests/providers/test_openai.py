"""OpenAI-compatible clients against ``httpx.MockTransport``: request shapes, parsing, fallbacks.

Virtual time: the mock transport does no I/O, so retries and Retry-After run in milliseconds.
"""

import json
import math

import httpx
import pytest
import trio

from everos.config import EmbeddingSettings, LLMSettings, RerankSettings
from everos.errors import ConfigError
from everos.providers import (
    ChatClient,
    EmbeddingClient,
    EmbeddingDimensionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    RerankClient,
)
from everos.providers._openai import count_usage

BASE = "http://models.test/v1"


class Server:
    """A scripted mock endpoint: ``answer(request_json, request)`` returns an httpx.Response."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []
        self.times = []

    async def __call__(self, request):
        await trio.lowlevel.checkpoint()
        body = json.loads(request.content) if request.content else None
        self.requests.append((request, body))
        self.times.append(trio.current_time())
        return self.answer(body, request)

    @property
    def bodies(self):
        return [body for _, body in self.requests]


def chat_response(content):
    return httpx.Response(200, json={"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})


def llm(server, **overrides):
    settings = LLMSettings(provider="openai", base_url=BASE + "/", model="m", **overrides)
    return ChatClient(settings, transport=httpx.MockTransport(server), random=lambda: 0.0)


def embedder(server, **overrides):
    settings = EmbeddingSettings(provider="openai", base_url=BASE, model="e", **overrides)
    return EmbeddingClient(settings, transport=httpx.MockTransport(server), random=lambda: 0.0)


def reranker(server, **overrides):
    settings = RerankSettings(provider="openai", base_url=BASE, model="r", **overrides)
    return RerankClient(settings, transport=httpx.MockTransport(server), random=lambda: 0.0)


def unit(*values):
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def vectors_answer(dim):
    def answer(body, request):
        data = [{"index": i, "embedding": unit(*([1.0] * (i + 1) + [0.5] * (dim - i - 1)))}
                for i, _ in enumerate(body["input"])]
        return httpx.Response(200, json={"data": list(reversed(data))})
    return answer


MESSAGES = [{"role": "user", "content": "[0] hello"}]


# --- chat -------------------------------------------------------------------------------------

async def test_chat_request_shape(autojump_clock):
    server = Server(lambda body, request: chat_response('{"ok": true}'))
    client = llm(server, api_key="sk-test", extra={"temperature": 0.2, "model": "override"})
    assert await client.complete_json(MESSAGES, budget="interactive") == {"ok": True}
    request, body = server.requests[0]
    assert str(request.url) == f"{BASE}/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert body == {"model": "override", "messages": MESSAGES, "response_format": {"type": "json_object"},
                    "stream": True, "stream_options": {"include_usage": True}, "temperature": 0.2}


async def test_chat_request_shape_unstreamed(autojump_clock):
    """[llm] stream = false: the plain request, the whole answer within the attempt timeout."""
    server = Server(lambda body, request: chat_response('{"ok": true}'))
    client = llm(server, stream=False)
    assert await client.complete_json(MESSAGES, budget="interactive") == {"ok": True}
    assert "stream" not in server.requests[0][1] and "stream_options" not in server.requests[0][1]


def event_stream(*chunks: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content="".join(f"{chunk}\n\n" for chunk in chunks).encode())


def delta(text: str, finish: str | None = None, **extra) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
                                  **extra})


async def test_a_streamed_answer_is_the_sum_of_its_events(autojump_clock):
    """#11: content pieces, comments and the usage of the last chunk make the answer."""
    server = Server(lambda body, request: event_stream(
        ": keep-alive", delta('{"topics"'), delta(': [], "n"'), delta(": 1}", "stop"),
        "data: " + json.dumps({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}),
        "data: [DONE]"))
    client = llm(server)
    assert await client.complete_json(MESSAGES, budget="interactive") == {"topics": [], "n": 1}
    assert client.tokens.snapshot()["answers"] == 1


@pytest.mark.parametrize(("chunks", "error"), [
    ((delta('{"a": 1}'),), "ProviderConnectionError"),               # ended before it finished
    (("data: {not json",), "ProviderResponseError"),                 # a chunk that is not JSON
    (('data: {"error": {"message": "slot busy"}}',), "ProviderResponseError"),
    ((delta("no json here", "stop"), "data: [DONE]"), "ProviderResponseError"),
])
async def test_a_broken_stream_is_an_error_of_its_kind(autojump_clock, chunks, error):
    server = Server(lambda body, request: event_stream(*chunks))
    with pytest.raises(ProviderError) as caught:
        await llm(server, max_retries=0).complete_json(MESSAGES, budget="interactive")
    assert type(caught.value).__name__ == error


async def test_chat_sends_no_authorization_without_an_api_key(autojump_clock):
    server = Server(lambda body, request: chat_response("{}"))
    await llm(server).complete_json(MESSAGES, budget="interactive")
    assert "authorization" not in server.requests[0][0].headers


async def test_chat_parses_fenced_json(autojump_clock):
    server = Server(lambda body, request: chat_response('Here:\n```json\n{"topics": []}\n```'))
    assert await llm(server).complete_json(MESSAGES, budget="interactive") == {"topics": []}


async def test_schema_hint_extends_the_system_message(autojump_clock):
    server = Server(lambda body, request: chat_response("{}"))
    messages = [{"role": "system", "content": "You extract topics."}, *MESSAGES]
    await llm(server).complete_json(messages, budget="interactive", schema_hint={"topics": []})
    sent = server.bodies[0]["messages"]
    assert len(sent) == 2
    assert sent[0]["content"].startswith("You extract topics.") and '{"topics": []}' in sent[0]["content"]
    assert messages[0]["content"] == "You extract topics."  # the caller's list is untouched


async def test_schema_hint_adds_a_system_message_when_there_is_none(autojump_clock):
    server = Server(lambda body, request: chat_response("{}"))
    await llm(server).complete_json(MESSAGES, budget="interactive", schema_hint="{category_id: string}")
    sent = server.bodies[0]["messages"]
    assert sent[0]["role"] == "system" and "{category_id: string}" in sent[0]["content"]
    assert sent[1:] == MESSAGES


async def test_rejected_response_format_falls_back_once_and_is_remembered(autojump_clock):
    def answer(body, request):
        if "response_format" in body:
            return httpx.Response(400, json={"error": {"message": "Unrecognized field response_format"}})
        return chat_response('{"n": 1}')

    server = Server(answer)
    client = llm(server)
    assert await client.complete_json(MESSAGES, budget="interactive") == {"n": 1}
    assert await client.complete_json(MESSAGES, budget="interactive") == {"n": 1}
    assert ["response_format" in body for body in server.bodies] == [True, False, False]
    assert not client.json_mode_supported
    assert server.times == [0.0, 0.0, 0.0]  # no backoff: the fallback is part of the attempt


async def test_other_400_answers_are_raised_without_fallback(autojump_clock):
    server = Server(lambda body, request: httpx.Response(400, json={"error": {"message": "context too long"}}))
    client = llm(server)
    with pytest.raises(ProviderHTTPError) as caught:
        await client.complete_json(MESSAGES, budget="interactive")
    assert caught.value.status == 400 and "context too long" in str(caught.value)
    assert len(server.requests) == 1
    assert client.json_mode_supported


async def test_malformed_model_text_is_reported_with_its_content(autojump_clock):
    server = Server(lambda body, request: chat_response('{"topics": [ cut'))
    with pytest.raises(ProviderResponseError) as caught:
        await llm(server).complete_json(MESSAGES, budget="interactive")
    assert caught.value.content == '{"topics": [ cut'
    assert len(server.requests) == 1


async def test_a_body_that_is_not_json_is_a_response_error(autojump_clock):
    server = Server(lambda body, request: httpx.Response(200, content=b"<html>proxy error</html>"))
    with pytest.raises(ProviderResponseError, match="not JSON"):
        await llm(server).complete_json(MESSAGES, budget="interactive")


async def test_a_body_nested_too_deep_is_a_response_error(autojump_clock):
    """Found by fuzz/ (answers target): ``json.loads`` of a body nested past the decoder's depth
    raised RecursionError out of the client instead of ProviderResponseError."""
    server = Server(lambda body, request: httpx.Response(200, content=b"[" * 100_000))
    with pytest.raises(ProviderResponseError, match="not JSON"):
        await llm(server, stream=False).complete_json(MESSAGES, budget="interactive")
    server = Server(lambda body, request: event_stream("data: " + "[" * 100_000))
    with pytest.raises(ProviderResponseError, match="not JSON"):
        await llm(server).complete_json(MESSAGES, budget="interactive")


@pytest.mark.parametrize("tokens", [pytest.param(10**400, id="10**400"), 10**10, -5, True, 1.5])
def test_usage_counts_that_are_not_token_counts_are_ignored(tokens):
    """Found by fuzz/ (answers target): ``usage.prompt_tokens`` of 10**400 raised OverflowError
    in the metrics counter, failing an answer that was otherwise fine."""
    assert count_usage("llm", {"usage": {"prompt_tokens": tokens, "completion_tokens": 3}}) == (0, 3)


async def test_retry_after_from_the_server_is_honoured(autojump_clock):
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}, json={}), chat_response("{}")])
    server = Server(lambda body, request: next(answers))
    await llm(server, retry_backoff_max_seconds=30.0).complete_json(MESSAGES, budget="background")
    assert server.times == [0.0, 7.0]


async def test_unauthorized_is_not_retried(autojump_clock):
    server = Server(lambda body, request: httpx.Response(401, json={"error": {"message": "bad key"}}))
    with pytest.raises(ProviderHTTPError) as caught:
        await llm(server).complete_json(MESSAGES, budget="interactive")
    assert caught.value.status == 401
    assert len(server.requests) == 1


def test_openai_provider_without_base_url_is_a_config_error():
    with pytest.raises(ConfigError, match=r"\[llm\].*base_url"):
        ChatClient(LLMSettings(provider="openai"))


async def test_aclose_is_idempotent(autojump_clock):
    client = llm(Server(lambda body, request: chat_response("{}")))
    await client.aclose()
    await client.aclose()


# --- embeddings -------------------------------------------------------------------------------

async def test_embed_batches_and_cuts_inputs(autojump_clock):
    server = Server(vectors_answer(8))
    client = embedder(server, dim=8, batch_size=2, max_input_chars=16, extra={"user": "everos"})
    texts = ["a" * 40, "", "two", "three", "four"]
    vectors = await client.embed(texts, budget="background")
    assert len(vectors) == 5 and all(len(v) == 8 for v in vectors)
    assert [body["input"] for body in server.bodies] == [["a" * 16, " "], ["two", "three"], ["four"]]
    assert server.bodies[0]["model"] == "e" and server.bodies[0]["user"] == "everos"
    assert str(server.requests[0][0].url) == f"{BASE}/embeddings"


async def test_embed_batches_by_estimated_tokens_too(autojump_clock):
    """#11: a local model's time goes by tokens and a request's overhead by requests: batches are
    as large as ``batch_tokens`` allows (4 ASCII characters or 1 other character a token); a text
    over it goes alone, and Chinese counts a token a character."""
    server = Server(vectors_answer(8))
    client = embedder(server, dim=8, batch_size=100, batch_tokens=10)
    texts = ["a" * 16, "b" * 20, "c" * 60, "d", "北京大学北京大学北京", "e"]  # 4, 5, 15, 1, 10, 1 tokens
    assert len(await client.embed(texts, budget="background")) == 6
    assert [body["input"] for body in server.bodies] == [
        ["a" * 16, "b" * 20], ["c" * 60], ["d"], ["北京大学北京大学北京"], ["e"]]


async def test_embed_keeps_input_order(autojump_clock):
    server = Server(vectors_answer(8))
    vectors = await embedder(server, dim=8).embed(["x", "y"], budget="interactive")
    assert vectors[0] == pytest.approx(unit(1.0, *[0.5] * 7))
    assert vectors[1] == pytest.approx(unit(1.0, 1.0, *[0.5] * 6))


async def test_embed_truncates_wider_vectors_and_renormalises(autojump_clock):
    server = Server(vectors_answer(32))
    vectors = await embedder(server, dim=8).embed(["x"], budget="interactive")
    assert len(vectors[0]) == 8
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0)


async def test_embed_refuses_narrower_vectors_without_retrying(autojump_clock):
    server = Server(vectors_answer(4))
    with pytest.raises(EmbeddingDimensionError, match="dim = 8"):
        await embedder(server, dim=8).embed(["x"], budget="interactive")
    assert len(server.requests) == 1


async def test_embed_of_nothing_sends_nothing(autojump_clock):
    server = Server(vectors_answer(8))
    assert await embedder(server, dim=8).embed([], budget="interactive") == []
    assert server.requests == []


async def test_large_answers_are_decoded_off_the_event_loop():
    """G5: a multi-megabyte answer is parsed in a worker thread (real clock: a thread runs)."""
    server = Server(vectors_answer(1024))
    vectors = await embedder(server, dim=1024, batch_size=64).embed([str(i) for i in range(64)], budget="interactive")
    assert len(vectors) == 64 and len(vectors[0]) == 1024


# --- rerank -----------------------------------------------------------------------------------

async def test_rerank_request_shape_and_merged_batches(autojump_clock):
    def answer(body, request):
        results = [{"index": i, "relevance_score": float(len(doc))} for i, doc in enumerate(body["documents"])]
        return httpx.Response(200, json={"results": results})

    server = Server(answer)
    ranked = await reranker(server, batch_size=2).rerank("q", ["a", "bbb", "cc", "dddd", "e"], budget="interactive")
    assert ranked == [(3, 4.0), (1, 3.0), (2, 2.0), (0, 1.0), (4, 1.0)]
    assert str(server.requests[0][0].url) == f"{BASE}/rerank"
    assert server.bodies[0] == {"model": "r", "query": "q", "documents": ["a", "bbb"], "top_n": 2}
    assert server.bodies[2]["documents"] == ["e"]


async def test_rerank_refuses_unknown_indexes(autojump_clock):
    server = Server(lambda body, request: httpx.Response(200, json={"results": [{"index": 9, "relevance_score": 1}]}))
    with pytest.raises(ProviderResponseError, match="index 9"):
        await reranker(server).rerank("q", ["a"], budget="interactive")


async def test_rerank_of_nothing_sends_nothing(autojump_clock):
    server = Server(lambda body, request: httpx.Response(500))
    assert await reranker(server).rerank("q", [], budget="interactive") == []
    assert server.requests == []
