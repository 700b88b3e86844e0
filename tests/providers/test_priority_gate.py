"""Interactive work first on a model with one slot (issue #11 item 2, G4): the priority gate in
front of an endpoint whose `slots` are set."""

from __future__ import annotations

import pytest
import trio

from everos.config import LLMSettings
from everos.providers import Budget, ChatClient
from everos.providers._policy import Budgets, PriorityGate
from everos.testing import FakeLLM
from everos.testing._slots import ModelSpeed


async def test_a_free_slot_goes_to_interactive_work_first(autojump_clock: trio.abc.Clock) -> None:
    """A background call holds the one slot, 50 more background calls and then an upload's
    interactive call wait: the interactive one runs next, the background ones after, in order."""
    gate = PriorityGate(1)
    order: list[str] = []
    backlog = [f"b{number}" for number in range(51)]

    async def call(name: str, budget: Budget) -> None:
        async with gate.slot(budget):
            order.append(name)
            await trio.sleep(1)

    async with trio.open_nursery() as nursery:
        for name in backlog:
            nursery.start_soon(call, name, Budget.BACKGROUND)
            await trio.sleep(0.01)
        assert gate.snapshot() == {"slots": 1, "in_flight": 1, "waiting_interactive": 0, "waiting_background": 50}
        nursery.start_soon(call, "upload", Budget.INTERACTIVE)
    assert order == ["b0", "upload", *backlog[1:]]
    assert gate.snapshot()["in_flight"] == 0


async def test_a_cancelled_waiter_loses_no_slot(autojump_clock: trio.abc.Clock) -> None:
    """G4: a waiter cancelled while it waits (its call's deadline) takes no slot with it."""
    gate = PriorityGate(1)
    done: list[str] = []

    async def call(name: str, budget: Budget, patience: float) -> None:
        with trio.move_on_after(patience):
            async with gate.slot(budget):
                await trio.sleep(1)
                done.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call, "first", Budget.BACKGROUND, 10)
        await trio.sleep(0.01)
        nursery.start_soon(call, "impatient", Budget.INTERACTIVE, 0.5)
        nursery.start_soon(call, "last", Budget.BACKGROUND, 10)
    assert done == ["first", "last"]
    assert gate.snapshot() == {"slots": 1, "in_flight": 0, "waiting_interactive": 0, "waiting_background": 0}


def test_the_gate_exists_only_when_the_slots_are_known() -> None:
    assert Budgets(interactive=4, background=2).gate is None
    assert Budgets.from_settings(LLMSettings(slots=2)).gate.slots == 2
    assert "slots" in Budgets.from_settings(LLMSettings(slots=1)).snapshot()
    with pytest.raises(ValueError):
        PriorityGate(0)


async def test_an_upload_waits_for_one_running_call_not_the_backlog(nursery) -> None:
    """Over loopback against the fake local model (one slot, about 0.45 s a call): six background
    calls are sent; once the first is at the model, an interactive one; the model sees it second."""
    fake = FakeLLM(speed=ModelSpeed(slots=1, prefill_tokens_per_second=400, decode_tokens_per_second=10_000))
    await nursery.start(fake.serve, "127.0.0.1", 0)
    client = ChatClient(LLMSettings(provider="openai", base_url=fake.base_url, model="m", slots=1,
                                    timeout_seconds=30, call_deadline_seconds=60, background_max_concurrent=8))
    prompt = "Title\n[0] " + "words " * 120  # ~180 tokens: about 0.45 s of prefill at 400 tokens/s

    async def ask(name: str, budget: Budget) -> None:
        await client.complete_json([{"role": "user", "content": f"{name}\n{prompt}"}], budget=budget)

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as calls:
                for number in range(6):
                    calls.start_soon(ask, f"background {number}", Budget.BACKGROUND)
                await fake.wait_until(lambda metrics: metrics["requests"]["chat"] >= 1)
                calls.start_soon(ask, "upload", Budget.INTERACTIVE)
    finally:
        await client.aclose()
    arrived = [request.body["messages"][0]["content"].split("\n", 1)[0] for request in fake.requests
               if request.route == "chat"]
    # Which background call goes first is trio's scheduling; the upload is next.
    assert arrived[0].startswith("background") and arrived[1] == "upload", arrived


def test_token_rate_counts_the_last_window_only() -> None:
    """#11 item 3: the recent tokens/s /health shows per endpoint, over a sliding minute."""
    from everos.providers._usage import TokenRate

    now = [1000.0]
    rate = TokenRate(window_seconds=60, clock=lambda: now[0])
    rate.record(6000, 1200)
    now[0] += 30
    rate.record(600, 0)
    assert rate.snapshot() == {"window_seconds": 60, "answers": 2, "prompt_tokens_per_second": 110.0,
                               "completion_tokens_per_second": 20.0}
    now[0] += 45  # the first answer left the window
    assert rate.snapshot()["answers"] == 1 and rate.snapshot()["completion_tokens_per_second"] == 0


async def test_health_shows_the_slots_and_recent_tokens_of_the_model(root, nursery) -> None:
    """#11 item 3: /health's providers block has the gate's slots and queue, and the recent rate."""
    from ..conftest import knowledge_server

    fake = FakeLLM()
    await nursery.start(fake.serve, "127.0.0.1", 0)
    async with knowledge_server(root, llm__provider="openai", llm__base_url=fake.base_url, llm__model="fake",
                                llm__slots=1) as server:
        response = await server.client.post("/api/v1/knowledge/documents", data={"title": "A"},
                                            files={"file": ("a.md", b"# A\n\nSome text about cats.\n")})
        assert response.status_code == 201
        llm = (await server.client.get("/health")).json()["providers"]["llm"]
    assert llm["budgets"]["slots"] == {"slots": 1, "in_flight": 0, "waiting_interactive": 0, "waiting_background": 0}
    assert llm["recent"]["answers"] >= 1 and llm["recent"]["prompt_tokens_per_second"] > 0
    nursery.cancel_scope.cancel()
