"""The clients against the fake server over real loopback sockets.

Real sockets and ``autojump_clock`` do not mix (the clock may jump while bytes are in flight), so
these tests use small real timeouts instead and never assert on speed.
"""

import functools
import math

import pytest
import trio

from everos.config import EmbeddingSettings, LLMSettings, RerankSettings
from everos.providers import (
    Budget,
    ChatClient,
    CircuitOpen,
    EmbeddingClient,
    EmbeddingDimensionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
)
from everos.testing import Fault

# Generous attempt timeouts where an answer is expected; 0.2 s where a stall must time out.
FAST = dict(timeout_seconds=3.0, call_deadline_seconds=10.0, max_retries=2, retry_backoff_base_seconds=0.01,
            retry_backoff_max_seconds=0.05)
DOCUMENT = [{"role": "user", "content": "Title\n[0] Cats purr when content.\n[1] Dogs bark at strangers."}]


def chat_client(fake, **overrides):
    return ChatClient(LLMSettings(provider="openai", base_url=fake.base_url, model="m", **{**FAST, **overrides}))


def embedding_client(fake, **overrides):
    settings = EmbeddingSettings(provider="openai", base_url=fake.base_url, dim=16, **{**FAST, **overrides})
    return EmbeddingClient(settings)


def rerank_client(fake, **overrides):
    from everos.providers import RerankClient

    return RerankClient(RerankSettings(provider="openai", base_url=fake.base_url, **{**FAST, **overrides}))


async def abandoned(fake, count):
    with trio.fail_after(5):
        return await fake.wait_until(lambda m: m["requests_abandoned"] >= count)


CALLS = {
    "chat": (chat_client, lambda c: c.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)),
    "embeddings": (embedding_client, lambda c: c.embed(["hello"], budget=Budget.INTERACTIVE)),
    "rerank": (rerank_client, lambda c: c.rerank("q", ["a", "b"], budget=Budget.INTERACTIVE)),
}


@pytest.mark.parametrize("route", sorted(CALLS))
async def test_cancelled_caller_closes_the_upstream_connection_and_frees_its_slot(fake_llm, route):
    """G3/G4: cancelling the caller closes the connection upstream and frees the slot at once."""
    make, call = CALLS[route]
    client = make(fake_llm, timeout_seconds=30.0, call_deadline_seconds=60.0)
    fake_llm.set_faults([Fault.stall(route=route)])
    with trio.move_on_after(0.2) as scope:
        await call(client)
    assert scope.cancelled_caught
    assert client.policy.budgets.snapshot()["interactive"]["in_flight"] == 0
    metrics = await abandoned(fake_llm, 1)
    assert metrics["connections_closed_by_peer"] >= 1
    await client.aclose()


async def test_stalled_endpoint_times_out_each_attempt(fake_llm):
    """G3: a stalled endpoint costs at most the attempt timeout per attempt."""
    client = chat_client(fake_llm, timeout_seconds=0.2, max_retries=1)
    fake_llm.set_faults([Fault.stall(route="chat")])
    with pytest.raises(ProviderTimeout, match="2 attempts"):
        await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    await abandoned(fake_llm, 2)  # each timed-out attempt closed its connection
    await client.aclose()


@pytest.mark.parametrize("at", ["mid_request", "before_response", "mid_response"])
async def test_connection_closed_by_the_endpoint_is_retried(fake_llm, at):
    client = chat_client(fake_llm)
    fake_llm.set_faults([Fault.close(at, route="chat", requests={1})])
    answer = await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    assert answer["topics"][0]["block_refs"] == "0-1"
    assert fake_llm.metrics()["requests"]["chat"] == 2
    await client.aclose()


async def test_trickle_slower_than_the_attempt_timeout_fails(fake_llm):
    client = chat_client(fake_llm, timeout_seconds=0.2, max_retries=0, stream=False)
    fake_llm.set_faults([Fault.trickle(200, route="chat")])
    with pytest.raises(ProviderTimeout):
        await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    await client.aclose()


async def test_trickle_within_the_attempt_timeout_succeeds(fake_llm):
    client = chat_client(fake_llm)
    fake_llm.set_faults([Fault.trickle(1_000_000, route="chat")])
    assert "topics" in await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    await client.aclose()


async def test_rate_limit_with_retry_after_then_success(fake_llm):
    client = chat_client(fake_llm)
    fake_llm.set_faults([Fault.status(429, retry_after=0.05, route="chat", requests={1, 2})])
    assert "topics" in await client.complete_json(DOCUMENT, budget=Budget.BACKGROUND)
    assert fake_llm.metrics()["requests"]["chat"] == 3
    await client.aclose()


async def test_server_errors_until_retries_run_out(fake_llm):
    client = chat_client(fake_llm, max_retries=2)
    fake_llm.set_faults([Fault.status(500, route="chat")])
    with pytest.raises(ProviderHTTPError) as caught:
        await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    assert caught.value.status == 500 and caught.value.attempts == 3
    await client.aclose()


async def test_wrong_api_key_is_not_retried(fake_llm):
    fake_llm.api_key = "right"
    client = chat_client(fake_llm, api_key="wrong")
    with pytest.raises(ProviderHTTPError) as caught:
        await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    assert caught.value.status == 401
    assert fake_llm.metrics()["requests"]["chat"] == 1
    await client.aclose()


async def test_response_format_fallback_against_a_server_without_json_mode(fake_llm):
    fake_llm.supports_response_format = False
    client = chat_client(fake_llm)
    assert "topics" in await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    assert not client.json_mode_supported
    assert ["response_format" in r.body for r in fake_llm.requests] == [True, False]
    await client.aclose()


async def test_malformed_model_answer_is_a_response_error(fake_llm):
    client = chat_client(fake_llm)
    fake_llm.set_faults([Fault.malformed_json(route="chat")])
    with pytest.raises(ProviderResponseError) as caught:
        await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    assert caught.value.content.startswith("Here is the JSON")
    await client.aclose()


async def test_wider_embeddings_are_truncated(fake_llm):
    client = embedding_client(fake_llm)
    fake_llm.set_faults([Fault.wrong_dim(64, route="embeddings")])
    [vector] = await client.embed(["hello world"], budget=Budget.BACKGROUND)
    assert len(vector) == 16 and math.isclose(sum(x * x for x in vector), 1.0)
    await client.aclose()


async def test_narrower_embeddings_are_a_clear_error(fake_llm):
    client = embedding_client(fake_llm)
    fake_llm.set_faults([Fault.wrong_dim(8, route="embeddings")])
    with pytest.raises(EmbeddingDimensionError, match="8-dimensional"):
        await client.embed(["hello world"], budget=Budget.BACKGROUND)
    await client.aclose()


async def test_rerank_against_the_fake(fake_llm):
    client = rerank_client(fake_llm)
    ranked = await client.rerank("cats purr", ["dogs bark", "cats purr loudly", "cats"], budget=Budget.INTERACTIVE)
    assert [index for index, _ in ranked] == [1, 2, 0]
    await client.aclose()


async def test_interactive_call_succeeds_while_background_is_stalled(fake_llm):
    """G4: background calls stalled upstream hold only background slots."""
    client = embedding_client(fake_llm, timeout_seconds=30.0, call_deadline_seconds=60.0,
                              max_concurrent=1, background_max_concurrent=1)
    fake_llm.set_faults([Fault.stall(route="embeddings", requests={1})])  # the 2nd waits for a slot
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(functools.partial(client.embed, ["indexing"], budget=Budget.BACKGROUND))
        with trio.fail_after(5):
            await fake_llm.wait_until(lambda m: m["requests"]["embeddings"] >= 1)
        budgets = client.policy.budgets.snapshot()
        assert budgets["background"] == {"in_flight": 1, "limit": 1, "waiting": 1}
        assert budgets["interactive"]["in_flight"] == 0
        with trio.fail_after(5):
            [vector] = await client.embed(["search query"], budget=Budget.INTERACTIVE)
        assert len(vector) == 16
        nursery.cancel_scope.cancel()
    await client.aclose()


async def test_circuit_opens_then_a_probe_closes_it(fake_llm):
    client = chat_client(fake_llm, max_retries=0, circuit_failure_threshold=2, circuit_cooldown_seconds=0.2)
    fake_llm.set_faults([Fault.status(503, route="chat")])
    for _ in range(2):
        with pytest.raises(ProviderHTTPError):
            await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    with pytest.raises(CircuitOpen):
        await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    assert fake_llm.metrics()["requests"]["chat"] == 2  # failing fast sent nothing
    fake_llm.recover()
    await trio.sleep(0.25)
    assert "topics" in await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    assert client.policy.breaker.snapshot()["state"] == "closed"
    await client.aclose()


# --- streamed answers (issue #11: a local model writes for minutes) ----------------------------


async def test_a_streamed_answer_longer_than_the_attempt_timeout_succeeds(nursery):
    """The model writes for about 1.5 s, a piece at a time; the timeout (0.5 s) bounds the time
    between pieces, not the answer: it arrives, whole, with its usage counted."""
    from everos.testing import FakeLLM
    from everos.testing._slots import ModelSpeed

    fake = FakeLLM(speed=ModelSpeed(prefill_tokens_per_second=100_000, decode_tokens_per_second=60))
    await nursery.start(fake.serve, "127.0.0.1", 0)
    client = chat_client(fake, timeout_seconds=0.5, max_retries=0)
    try:
        with trio.fail_after(10):
            answer = await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    finally:
        await client.aclose()
    assert answer["topics"] and fake.requests[-1].body["stream"] is True
    assert fake.metrics()["model"]["slots"][0]["busy_seconds"] > 0.5  # longer than the timeout
    assert client.tokens.snapshot()["completion_tokens_per_second"] > 0


async def test_a_model_that_stops_writing_times_out_after_the_idle_time(fake_llm):
    """Half the events, then nothing: the attempt fails after timeout_seconds of silence."""
    client = chat_client(fake_llm, timeout_seconds=0.3, max_retries=0)
    fake_llm.set_faults([Fault.stall(at="mid_response", route="chat")])
    try:
        with trio.fail_after(5), pytest.raises(ProviderTimeout, match="sent nothing for 0.3s"):
            await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    finally:
        fake_llm.recover()
        await client.aclose()


async def test_a_stream_cut_short_is_retried(fake_llm):
    """The connection closes halfway through the events of the first attempt; the retry answers."""
    client = chat_client(fake_llm)
    fake_llm.set_faults([Fault.close(at="mid_response", route="chat", requests={1})])
    try:
        assert "topics" in await client.complete_json(DOCUMENT, budget=Budget.INTERACTIVE)
    finally:
        await client.aclose()
    assert fake_llm.metrics()["requests"]["chat"] == 2
