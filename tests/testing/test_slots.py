"""The fake as slow as a local model server (issue #11): slots, a first-come queue, token rates.

Virtual time: the fake's waits are exact, so busy time, queue wait and the order of answers are
asserted exactly. Over loopback the clock may jump only after a short real idle
(``loopback_clock``): a clock that jumps the moment every task waits would fire the client's read
timeout while a request's bytes are still on their way through the kernel.
"""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from everos.testing import FakeLLM
from everos.testing._slots import ModelSpeed, SlotModel, estimate_tokens
from everos.testing.fake_llm import build_parser, fake_from_args


@pytest.fixture
def loopback_clock() -> trio.testing.MockClock:
    """Virtual time that jumps after 0.5 s without anything to do, in real time.

    The fake builds each answer in a worker thread; while it does, no task is runnable and the
    earliest deadline is the client's timeout. With a 20 ms threshold a build slowed by a loaded
    machine let the clock jump to that timeout (a ReadTimeout, seen once in about eight runs); no
    build takes half a second."""
    return trio.testing.MockClock(autojump_threshold=0.5)


def test_tokens_are_estimated_per_script() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("abcd" * 100) == 100
    assert estimate_tokens("知识库") == 3
    assert estimate_tokens("abcd知识") == 3


def test_speed_is_validated_and_timed() -> None:
    speed = ModelSpeed(slots=1, prefill_tokens_per_second=1000, decode_tokens_per_second=50,
                       embed_tokens_per_second=10000)
    assert speed.seconds("chat", 2000, 100) == pytest.approx(4.0)
    assert speed.seconds("embeddings", 5000, 0) == pytest.approx(0.5)
    for bad in ({"slots": 0}, {"decode_tokens_per_second": 0}, {"prefill_tokens_per_second": -1}):
        with pytest.raises(ValueError):
            ModelSpeed(**bad)


async def test_one_slot_serves_requests_in_arrival_order(autojump_clock: trio.abc.Clock) -> None:
    slots = SlotModel(ModelSpeed(slots=1, prefill_tokens_per_second=100, decode_tokens_per_second=10))
    finished: list[tuple[int, float]] = []
    start = trio.current_time()

    async def request(number: int) -> None:
        await slots.run("chat", 100, 10)  # 1 s prefill + 1 s decode
        finished.append((number, trio.current_time() - start))

    async with trio.open_nursery() as nursery:
        for number in range(3):
            nursery.start_soon(request, number)
            await trio.sleep(0.001)  # arrive in this order
    assert [n for n, _ in finished] == [0, 1, 2]
    assert [round(t, 2) for _, t in finished] == [2.0, 4.0, 6.0]
    metrics = slots.metrics()
    assert metrics["slots"] == [{"slot": 0, "busy_seconds": pytest.approx(6.0), "requests": 3}]
    assert metrics["queue_wait_seconds_max"] == pytest.approx(4.0 - 0.002, abs=1e-3)
    assert metrics["tokens_in"] == 300 and metrics["tokens_out"] == 30
    assert metrics["routes"] == {"chat": {"requests": 3, "tokens_in": 300, "tokens_out": 30,
                                          "busy_seconds": pytest.approx(6.0)}}
    assert metrics["queued"] == 0 and metrics["running"] == 0
    assert metrics["busy_fraction"] == pytest.approx(1.0, abs=0.01)
    assert metrics["busy_fraction_working"] == pytest.approx(1.0, abs=0.01)
    await trio.sleep(6)  # nothing to do: idle, but not while it had work
    assert slots.metrics()["busy_fraction"] == pytest.approx(0.5, abs=0.01)
    assert slots.metrics()["busy_fraction_working"] == pytest.approx(1.0, abs=0.01)


async def test_two_slots_run_two_at_once(autojump_clock: trio.abc.Clock) -> None:
    slots = SlotModel(ModelSpeed(slots=2, prefill_tokens_per_second=100, decode_tokens_per_second=10))
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(slots.run, "chat", 100, 10)
    assert trio.current_time() - start == pytest.approx(4.0)
    assert [s["requests"] for s in slots.metrics()["slots"]] == [2, 2]


async def test_a_cancelled_request_frees_its_slot(autojump_clock: trio.abc.Clock) -> None:
    """A client that gives up (llama-server notices the closed connection) frees the slot."""
    slots = SlotModel(ModelSpeed(slots=1, prefill_tokens_per_second=1, decode_tokens_per_second=1))
    with trio.move_on_after(5):
        await slots.run("chat", 1000, 0)
    assert slots.metrics()["running"] == 0
    start = trio.current_time()
    await slots.run("chat", 1, 0)
    assert trio.current_time() - start == pytest.approx(1.0)
    assert slots.metrics()["slots"][0]["busy_seconds"] == pytest.approx(6.0)


async def test_the_fake_queues_chat_behind_its_one_slot(loopback_clock: trio.abc.Clock) -> None:
    """Over loopback: three chat requests at once to a one-slot fake answer one after another,
    and /metrics reports the slot's busy time, the queue wait and the tokens."""
    fake = FakeLLM(speed=ModelSpeed(slots=1, prefill_tokens_per_second=1500, decode_tokens_per_second=40))
    prompt = "word " * 1500  # about 1,875 tokens
    done: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve, "127.0.0.1", 0)
        async with httpx.AsyncClient(base_url=fake.base_url, timeout=600) as client:
            start = trio.current_time()

            async def ask() -> None:
                response = await client.post("/chat/completions", json={
                    "model": "m", "messages": [{"role": "user", "content": prompt}]})
                assert response.status_code == 200
                done.append(trio.current_time() - start)

            async with trio.open_nursery() as requests:
                for _ in range(3):
                    requests.start_soon(ask)
            metrics = (await client.get(fake.base_url[:-3] + "/metrics")).json()["model"]
        nursery.cancel_scope.cancel()
    per_request = metrics["slots"][0]["busy_seconds"] / 3
    assert per_request > 1.0  # 1,875 prompt tokens at 1,500/s, plus the answer at 40/s
    assert metrics["slots"][0]["requests"] == 3
    assert metrics["tokens_in"] == 3 * estimate_tokens(prompt)
    assert metrics["tokens_out"] > 0
    assert metrics["queue_wait_seconds_total"] == pytest.approx(3 * per_request, rel=0.05)  # 0 + 1 + 2 turns
    assert sorted(done)[-1] == pytest.approx(3 * per_request, rel=0.05)


def test_the_command_line_sets_the_speed() -> None:
    fake = fake_from_args(build_parser().parse_args(
        ["--slots", "2", "--prefill-tps", "900", "--decode-tps", "25", "--embed-tps", "5000"]))
    assert fake.slots is not None
    assert fake.slots.speed == ModelSpeed(slots=2, prefill_tokens_per_second=900, decode_tokens_per_second=25,
                                          embed_tokens_per_second=5000)
    assert fake_from_args(build_parser().parse_args([])).slots is None
    local = fake_from_args(build_parser().parse_args(["--local-model"]))
    assert local.slots is not None and local.slots.speed == ModelSpeed()
