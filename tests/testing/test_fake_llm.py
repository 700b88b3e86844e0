"""The fake OpenAI-compatible server over real loopback sockets: routes and every fault.

Real sockets, so real (small) timeouts; no assertion on speed.
"""

import json

import httpx
import pytest
import trio

from everos.testing import FakeLLM, Fault

CHAT = {"model": "m", "messages": [{"role": "user", "content": "[0] Cats purr.\n[1] Dogs bark."}]}


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


async def post(http, fake, path, body):
    return await http.post(fake.base_url + path, json=body)


def content_of(response):
    return response.json()["choices"][0]["message"]["content"]


# --- routes -----------------------------------------------------------------------------------

async def test_base_url_before_serving_is_an_error():
    with pytest.raises(RuntimeError, match="not serving"):
        FakeLLM().base_url


async def test_models(fake_llm, http):
    response = await http.get(fake_llm.base_url + "/models")
    assert response.json()["data"][0]["id"] == "fake-model"


async def test_chat_answers_a_topic_tree(fake_llm, http):
    response = await post(http, fake_llm, "/chat/completions", CHAT)
    assert response.status_code == 200
    tree = json.loads(content_of(response))
    assert tree["topics"][0]["block_refs"] == "0-1"
    assert fake_llm.requests[-1].body == CHAT


async def test_chat_can_fence_its_json(fake_llm, http):
    fake_llm.fence_json = True
    content = content_of(await post(http, fake_llm, "/chat/completions", CHAT))
    assert content.startswith("```json\n{") and content.endswith("}\n```")


async def test_chat_can_reject_response_format(fake_llm, http):
    fake_llm.supports_response_format = False
    response = await post(http, fake_llm, "/chat/completions", {**CHAT, "response_format": {"type": "json_object"}})
    assert response.status_code == 400 and "response_format" in response.text


async def test_embeddings_use_the_requested_dimensions(fake_llm, http):
    default = (await post(http, fake_llm, "/embeddings", {"input": ["a", "b"]})).json()
    assert [len(item["embedding"]) for item in default["data"]] == [16, 16]
    asked = (await post(http, fake_llm, "/embeddings", {"input": "a", "dimensions": 8})).json()
    assert len(asked["data"][0]["embedding"]) == 8


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank"])
async def test_rerank_on_both_paths(fake_llm, http, path):
    url = fake_llm.base_url[: -len("/v1")] + path
    response = await http.post(url, json={"query": "cats", "documents": ["dogs", {"text": "cats"}], "top_n": 1})
    assert response.json()["results"] == [{"index": 1, "relevance_score": 1.0, "document": {"text": "cats"}}]


async def test_metrics_count_requests_and_connections(fake_llm, http):
    for _ in range(3):
        await post(http, fake_llm, "/embeddings", {"input": "x"})
    metrics = (await http.get(fake_llm.base_url[:-3] + "/metrics")).json()
    assert metrics["requests"]["embeddings"] == 3
    assert metrics["connections_total"] == 1  # keep-alive: one connection served all
    assert metrics["open_connections"] == 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [("GET", "/nope", None, 404), ("GET", "/chat/completions", None, 405), ("POST", "/embeddings", b"{not json", 400),
     ("POST", "/embeddings", b'{"input": []}', 400), ("POST", "/chat/completions", b'{"messages": "x"}', 400)],
)
async def test_bad_requests_get_openai_style_errors(fake_llm, http, method, path, body, status):
    response = await http.request(method, fake_llm.base_url + path, content=body)
    assert response.status_code == status
    assert "message" in response.json()["error"]


async def test_api_key_is_required_when_set(fake_llm, http):
    fake_llm.api_key = "secret"
    assert (await http.get(fake_llm.base_url + "/models")).status_code == 401
    ok = await http.get(fake_llm.base_url + "/models", headers={"Authorization": "Bearer secret"})
    assert ok.status_code == 200


# --- faults -----------------------------------------------------------------------------------

async def test_latency_delays_the_answer(fake_llm, http):
    fake_llm.set_faults([Fault.latency(0.1)])
    started = trio.current_time()
    assert (await post(http, fake_llm, "/chat/completions", CHAT)).status_code == 200
    assert trio.current_time() - started >= 0.1


async def test_stall_holds_the_answer_until_recover(fake_llm, http):
    fake_llm.set_faults([Fault.stall(route="chat")])
    answers = []

    async def ask():
        answers.append(await post(http, fake_llm, "/chat/completions", CHAT))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        with trio.fail_after(5):
            await fake_llm.wait_until(lambda m: m["requests"]["chat"] == 1)
        await trio.sleep(0.05)
        assert answers == []
        fake_llm.recover()
    assert answers[0].status_code == 200


async def test_client_giving_up_on_a_stall_is_observed(fake_llm, http):
    fake_llm.set_faults([Fault.stall()])
    with trio.move_on_after(0.1):
        await post(http, fake_llm, "/embeddings", {"input": "x"})
    with trio.fail_after(5):
        metrics = await fake_llm.wait_until(lambda m: m["requests_abandoned"] == 1)
    assert metrics["connections_closed_by_peer"] == 1
    assert metrics["open_connections"] == 0


@pytest.mark.parametrize("at", ["mid_request", "before_response", "mid_response"])
async def test_close_drops_the_connection(fake_llm, http, at):
    fake_llm.set_faults([Fault.close(at, route="chat")])
    with pytest.raises(httpx.TransportError):
        await post(http, fake_llm, "/chat/completions", CHAT)
    assert fake_llm.metrics()["connections_closed_by_fault"] == 1
    assert fake_llm.metrics()["faults_applied"] == {"close": 1}


async def test_close_mid_response_sends_a_partial_body(fake_llm, http):
    fake_llm.set_faults([Fault.close("mid_response")])
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete|without sending complete"):
        await post(http, fake_llm, "/chat/completions", CHAT)


async def test_trickle_delivers_the_whole_body(fake_llm, http):
    expected = content_of(await post(http, fake_llm, "/chat/completions", CHAT))
    fake_llm.set_faults([Fault.trickle(40_000)])
    assert content_of(await post(http, fake_llm, "/chat/completions", CHAT)) == expected


async def test_status_fault_with_retry_after(fake_llm, http):
    fake_llm.set_faults([Fault.status(429, retry_after=2, route="embeddings")])
    response = await post(http, fake_llm, "/embeddings", {"input": "x"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == 429


async def test_malformed_json_breaks_the_model_content(fake_llm, http):
    fake_llm.set_faults([Fault.malformed_json(route="chat")])
    response = await post(http, fake_llm, "/chat/completions", CHAT)
    with pytest.raises(ValueError):
        json.loads(content_of(response))


async def test_malformed_json_in_body_breaks_the_http_body(fake_llm, http):
    fake_llm.set_faults([Fault.malformed_json(in_body=True)])
    response = await post(http, fake_llm, "/chat/completions", CHAT)
    with pytest.raises(ValueError):
        response.json()


async def test_wrong_dim(fake_llm, http):
    fake_llm.set_faults([Fault.wrong_dim(5)])
    answer = (await post(http, fake_llm, "/embeddings", {"input": ["a"], "dimensions": 16})).json()
    assert len(answer["data"][0]["embedding"]) == 5


async def test_faults_by_request_number_per_route(fake_llm, http):
    fake_llm.set_faults([Fault.status(503, route="chat", requests={2})])
    await post(http, fake_llm, "/embeddings", {"input": "x"})  # other routes do not count
    statuses = [(await post(http, fake_llm, "/chat/completions", CHAT)).status_code for _ in range(3)]
    assert statuses == [200, 503, 200]


async def test_probabilistic_faults_repeat_with_the_same_seed(nursery, http):
    runs = []
    for _ in range(2):
        fake = FakeLLM([Fault.status(500, probability=0.5)], seed=42)
        await nursery.start(fake.serve, "127.0.0.1", 0)
        runs.append([(await http.get(fake.base_url + "/models")).status_code for _ in range(12)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


async def test_recover_clears_every_fault(fake_llm, http):
    fake_llm.set_faults([Fault.status(500)])
    assert (await http.get(fake_llm.base_url + "/models")).status_code == 500
    fake_llm.recover()
    assert (await http.get(fake_llm.base_url + "/models")).status_code == 200


async def test_metrics_route_is_never_faulted(fake_llm, http):
    fake_llm.set_faults([Fault.stall(), Fault.close()])
    response = await http.get(fake_llm.base_url[:-3] + "/metrics")
    assert response.json()["requests"]["other"] == 0
