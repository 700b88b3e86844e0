"""The attempt policy: deadlines (G3), per-attempt budgets (G4), retries, Retry-After, breaker."""

import email.utils
import functools

import httpx
import pytest
import trio

from everos.providers import (
    AttemptPolicy,
    Budget,
    Budgets,
    CircuitBreaker,
    CircuitOpen,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
    backoff_seconds,
    is_retryable_exception,
    is_retryable_status,
    parse_retry_after,
    retry_delay_seconds,
)

ENDPOINT = "llm endpoint http://test/v1"


class Script:
    """An attempt function playing scripted outcomes: a value, an exception, or "stall"."""

    def __init__(self, *outcomes, budgets=None):
        self.outcomes = list(outcomes)
        self.starts = []
        self.borrowed = []
        self.budgets = budgets

    async def __call__(self):
        self.starts.append(trio.current_time())
        if self.budgets is not None:
            self.borrowed.append(self.budgets.interactive.borrowed_tokens)
        outcome = self.outcomes.pop(0)
        if outcome == "stall":
            await trio.sleep_forever()
        await trio.lowlevel.checkpoint()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def http_error(status, retry_after=None):
    return ProviderHTTPError(ENDPOINT, status, body_excerpt="boom", retry_after_seconds=retry_after)


def make_policy(*, threshold=100, cooldown=30.0, **overrides):
    settings = dict(
        attempt_timeout_seconds=10.0,
        call_deadline_seconds=100.0,
        max_retries=3,
        backoff_base_seconds=1.0,
        backoff_max_seconds=8.0,
        budgets=Budgets(interactive=2, background=1),
        breaker=CircuitBreaker(ENDPOINT, failure_threshold=threshold, cooldown_seconds=cooldown),
        random=lambda: 1.0,  # full step: backoffs of 1, 2, 4, 8 s
    )
    settings.update(overrides)
    return AttemptPolicy(ENDPOINT, **settings)


# --- pure parts -------------------------------------------------------------------------------

def test_backoff_doubles_per_retry_and_is_capped():
    delays = [backoff_seconds(n, base_seconds=1.0, max_seconds=8.0, jitter=1.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_jitter_keeps_at_least_half_the_step():
    assert backoff_seconds(3, base_seconds=1.0, max_seconds=8.0, jitter=0.0) == 2.0
    assert backoff_seconds(3, base_seconds=1.0, max_seconds=8.0, jitter=0.5) == 3.0


def test_backoff_of_a_huge_retry_number_does_not_overflow():
    assert backoff_seconds(10_000, base_seconds=0.5, max_seconds=30.0, jitter=1.0) == 30.0


def test_retry_delay_prefers_retry_after_and_caps_it():
    assert retry_delay_seconds(1, 5.0, base_seconds=1.0, max_seconds=8.0, jitter=1.0) == 5.0
    assert retry_delay_seconds(1, 500.0, base_seconds=1.0, max_seconds=8.0, jitter=1.0) == 8.0
    assert retry_delay_seconds(2, None, base_seconds=1.0, max_seconds=8.0, jitter=1.0) == 2.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("5", 5.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0), (None, None), ("", None), ("soon", None),
     ("nan", None), ("inf", None)],
)
def test_parse_retry_after_delta_seconds(header, seconds):
    assert parse_retry_after(header) == seconds


def test_parse_retry_after_http_date():
    now = 1_800_000_000.0
    future = email.utils.formatdate(now + 120, usegmt=True)
    past = email.utils.formatdate(now - 120, usegmt=True)
    assert parse_retry_after(future, now_epoch_seconds=now) == pytest.approx(120.0)
    assert parse_retry_after(past, now_epoch_seconds=now) == 0.0


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status):
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 404, 413, 422])
def test_statuses_not_retried(status):
    assert not is_retryable_status(status)


def test_transport_error_classification():
    request = httpx.Request("POST", "http://test/v1")
    assert is_retryable_exception(httpx.ConnectError("refused", request=request))
    assert is_retryable_exception(httpx.ReadTimeout("slow", request=request))
    assert is_retryable_exception(httpx.RemoteProtocolError("closed mid-body", request=request))
    assert not is_retryable_exception(httpx.UnsupportedProtocol("ftp://", request=request))
    assert not is_retryable_exception(ValueError("bug"))


def test_unknown_budget_name_is_refused():
    with pytest.raises(ValueError):
        Budgets(interactive=1, background=1).limiter("urgent")


# --- calls, in virtual time -------------------------------------------------------------------

async def test_call_returns_the_first_answer(autojump_clock):
    script = Script("ok")
    assert await make_policy().call(script, budget=Budget.INTERACTIVE) == "ok"
    assert script.starts == [0.0]


async def test_attempt_timeout_is_retried_after_backoff(autojump_clock):
    """G3: each attempt has its own deadline."""
    script = Script("stall", "ok")
    assert await make_policy().call(script, budget="interactive") == "ok"
    assert script.starts == [0.0, 11.0]  # 10 s attempt timeout + 1 s backoff


async def test_attempt_timeouts_until_retries_run_out(autojump_clock):
    script = Script(*["stall"] * 4)
    with pytest.raises(ProviderTimeout) as caught:
        await make_policy().call(script, budget="interactive")
    assert script.starts == [0.0, 11.0, 23.0, 37.0]
    assert trio.current_time() == 47.0
    assert caught.value.attempts == 4
    assert ENDPOINT in str(caught.value) and "4 attempts" in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [httpx.ConnectError("refused"), httpx.RemoteProtocolError("peer closed connection"), httpx.ReadError("reset")],
)
async def test_transport_errors_are_retried(autojump_clock, error):
    script = Script(error, "ok")
    assert await make_policy().call(script, budget="interactive") == "ok"
    assert len(script.starts) == 2


async def test_connection_failures_until_retries_run_out(autojump_clock):
    script = Script(*[httpx.ConnectError("refused")] * 2)
    with pytest.raises(ProviderConnectionError) as caught:
        await make_policy(max_retries=1).call(script, budget="interactive")
    assert caught.value.attempts == 2
    assert "ConnectError" in str(caught.value)


async def test_unsupported_protocol_is_not_retried(autojump_clock):
    script = Script(httpx.UnsupportedProtocol("no scheme"), "ok")
    with pytest.raises(ProviderConnectionError):
        await make_policy().call(script, budget="interactive")
    assert len(script.starts) == 1


@pytest.mark.parametrize("status", [408, 409, 429, 500, 503])
async def test_retryable_statuses_are_retried(autojump_clock, status):
    script = Script(http_error(status), "ok")
    assert await make_policy().call(script, budget="interactive") == "ok"
    assert script.starts == [0.0, 1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(autojump_clock, status):
    script = Script(http_error(status), "ok")
    with pytest.raises(ProviderHTTPError) as caught:
        await make_policy().call(script, budget="interactive")
    assert caught.value.status == status
    assert caught.value.attempts == 1
    assert len(script.starts) == 1


async def test_server_errors_until_retries_run_out(autojump_clock):
    script = Script(*[http_error(503)] * 3)
    with pytest.raises(ProviderHTTPError) as caught:
        await make_policy(max_retries=2).call(script, budget="interactive")
    assert caught.value.status == 503
    assert "HTTP 503" in str(caught.value) and "3 attempts" in str(caught.value)


async def test_malformed_answer_is_not_retried(autojump_clock):
    script = Script(ProviderResponseError(ENDPOINT, "no JSON object", content="oops"), "ok")
    with pytest.raises(ProviderResponseError) as caught:
        await make_policy().call(script, budget="interactive")
    assert caught.value.content == "oops"
    assert len(script.starts) == 1


async def test_retry_after_is_honoured(autojump_clock):
    script = Script(http_error(429, retry_after=5.0), "ok")
    await make_policy().call(script, budget="interactive")
    assert script.starts == [0.0, 5.0]


async def test_retry_after_is_capped_at_backoff_max(autojump_clock):
    script = Script(http_error(503, retry_after=3600.0), "ok")
    await make_policy().call(script, budget="interactive")
    assert script.starts == [0.0, 8.0]


async def test_call_deadline_cuts_the_attempt_in_flight(autojump_clock):
    """G3: the whole call, retries and backoff included, ends at the call deadline."""
    script = Script(*["stall"] * 4)
    with pytest.raises(ProviderTimeout) as caught:
        await make_policy(call_deadline_seconds=25.0).call(script, budget="interactive")
    assert trio.current_time() == 25.0
    assert script.starts == [0.0, 11.0, 23.0]
    assert "call deadline of 25s" in str(caught.value)


async def test_backoff_past_the_deadline_ends_the_call_at_once(autojump_clock):
    script = Script(http_error(503, retry_after=8.0), "ok")
    with pytest.raises(ProviderHTTPError) as caught:
        await make_policy(call_deadline_seconds=5.0).call(script, budget="interactive")
    assert trio.current_time() == 0.0
    assert caught.value.attempts == 1


async def test_slot_is_held_during_the_attempt_only(autojump_clock):
    """G4: the limiter is released before the backoff sleep."""
    budgets = Budgets(interactive=2, background=1)
    script = Script(http_error(503, retry_after=4.0), "ok", budgets=budgets)
    policy = make_policy(budgets=budgets)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(policy.call, script, budget=Budget.INTERACTIVE))
        await trio.sleep(2.0)  # inside the 4 s backoff
        assert budgets.interactive.borrowed_tokens == 0
    assert script.borrowed == [1, 1]


async def test_interactive_call_gets_a_slot_while_background_is_saturated(autojump_clock):
    """G4: stalled background calls never take the slot an interactive call needs."""
    budgets = Budgets(interactive=1, background=2)
    policy = make_policy(budgets=budgets, attempt_timeout_seconds=600.0, call_deadline_seconds=600.0)
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(functools.partial(policy.call, Script("stall"), budget=Budget.BACKGROUND))
        await trio.sleep(1.0)
        assert budgets.background.statistics().tasks_waiting == 1
        started = trio.current_time()
        assert await policy.call(Script("ok"), budget=Budget.INTERACTIVE) == "ok"
        assert trio.current_time() == started
        nursery.cancel_scope.cancel()


async def test_caller_cancellation_propagates_and_frees_the_slot(autojump_clock):
    """G3/G4: a caller's cancel is not turned into a provider error; nothing stays held."""
    policy = make_policy(threshold=1)
    with trio.move_on_after(5.0) as scope:
        await policy.call(Script("stall"), budget="interactive")
    assert scope.cancelled_caught
    assert policy.budgets.interactive.borrowed_tokens == 0
    assert policy.breaker.snapshot()["consecutive_failures"] == 0
    assert policy.breaker.state == "closed"


async def test_waiting_for_a_slot_counts_against_the_call_deadline(autojump_clock):
    budgets = Budgets(interactive=1, background=1)
    holder = make_policy(budgets=budgets)
    policy = make_policy(budgets=budgets, call_deadline_seconds=3.0, threshold=1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(holder.call, Script("stall"), budget=Budget.INTERACTIVE))
        await trio.sleep(1.0)  # the holder takes the only slot
        with pytest.raises(ProviderTimeout) as caught:
            await policy.call(Script("ok"), budget=Budget.INTERACTIVE)
        nursery.cancel_scope.cancel()
    assert trio.current_time() == 4.0
    assert "no slot of the interactive budget came free" in str(caught.value)
    assert policy.breaker.state == "closed"  # our congestion is not the endpoint's failure


async def test_open_circuit_fails_fast_without_an_attempt(autojump_clock):
    policy = make_policy(threshold=2, max_retries=0)
    for _ in range(2):
        with pytest.raises(ProviderHTTPError):
            await policy.call(Script(http_error(500)), budget="interactive")
    script = Script("ok")
    with pytest.raises(CircuitOpen) as caught:
        await policy.call(script, budget="interactive")
    assert script.starts == []
    assert caught.value.retry_after_s == pytest.approx(30.0)


async def test_answers_that_are_not_retried_keep_the_circuit_closed(autojump_clock):
    policy = make_policy(threshold=1, max_retries=0)
    with pytest.raises(ProviderHTTPError):
        await policy.call(Script(http_error(401)), budget="interactive")
    assert policy.breaker.state == "closed"


async def test_half_open_probe_success_closes_the_circuit(autojump_clock):
    policy = make_policy(threshold=1, max_retries=0, cooldown=30.0)
    with pytest.raises(ProviderTimeout):
        await policy.call(Script("stall"), budget="interactive")
    await trio.sleep(30.0)
    assert await policy.call(Script("ok"), budget="interactive") == "ok"
    assert policy.breaker.state == "closed"


async def test_cancelled_probe_lets_the_next_call_probe(autojump_clock):
    policy = make_policy(threshold=1, max_retries=0, cooldown=30.0)
    with pytest.raises(ProviderTimeout):
        await policy.call(Script("stall"), budget="interactive")
    await trio.sleep(30.0)
    with trio.move_on_after(1.0):
        await policy.call(Script("stall"), budget="interactive")
    assert await policy.call(Script("ok"), budget="interactive") == "ok"


def test_policy_from_settings_uses_every_key():
    from everos.config import LLMSettings

    settings = LLMSettings(timeout_seconds=7.0, call_deadline_seconds=70.0, max_retries=5, max_concurrent=3,
                           background_max_concurrent=1, retry_backoff_base_seconds=0.25,
                           retry_backoff_max_seconds=9.0, circuit_failure_threshold=4, circuit_cooldown_seconds=11.0)
    policy = AttemptPolicy.from_settings(settings, endpoint=ENDPOINT)
    assert (policy.attempt_timeout_seconds, policy.call_deadline_seconds, policy.max_retries) == (7.0, 70.0, 5)
    assert (policy.backoff_base_seconds, policy.backoff_max_seconds) == (0.25, 9.0)
    assert policy.budgets.interactive.total_tokens == 3 and policy.budgets.background.total_tokens == 1
    assert (policy.breaker.failure_threshold, policy.breaker.cooldown_seconds) == (4, 11.0)
