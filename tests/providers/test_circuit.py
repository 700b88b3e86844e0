"""The circuit breaker: closed → open → half-open (one probe) → closed or open again."""

import pytest
import trio

from everos.providers import CircuitBreaker, CircuitOpen, CircuitState

ENDPOINT = "llm endpoint http://test/v1"


def breaker(threshold=3, cooldown=30.0):
    return CircuitBreaker(ENDPOINT, failure_threshold=threshold, cooldown_seconds=cooldown)


def fail(circuit, times=1, error="HTTP 503"):
    for _ in range(times):
        circuit.record_failure(circuit.admit(), error)


async def test_starts_closed_and_admits_calls(autojump_clock):
    circuit = breaker()
    assert circuit.state is CircuitState.CLOSED
    assert not circuit.admit().probe


async def test_stays_closed_below_the_threshold(autojump_clock):
    circuit = breaker(threshold=3)
    fail(circuit, 2)
    assert circuit.state is CircuitState.CLOSED


async def test_a_success_resets_the_failure_count(autojump_clock):
    circuit = breaker(threshold=3)
    fail(circuit, 2)
    circuit.record_success(circuit.admit())
    fail(circuit, 2)
    assert circuit.state is CircuitState.CLOSED
    assert circuit.snapshot()["consecutive_failures"] == 2


async def test_opens_at_the_threshold_and_fails_fast(autojump_clock):
    circuit = breaker(threshold=3, cooldown=30.0)
    fail(circuit, 3, error="HTTP 503: overloaded")
    assert circuit.state is CircuitState.OPEN
    await trio.sleep(10.0)
    with pytest.raises(CircuitOpen) as caught:
        circuit.admit()
    assert caught.value.retry_after_s == pytest.approx(20.0)
    assert ENDPOINT in str(caught.value)
    assert "3 failed calls in a row" in str(caught.value)
    assert "HTTP 503: overloaded" in str(caught.value)


async def test_half_open_after_the_cooldown_lets_exactly_one_probe(autojump_clock):
    circuit = breaker(threshold=1, cooldown=30.0)
    fail(circuit)
    await trio.sleep(30.0)
    assert circuit.state is CircuitState.HALF_OPEN
    assert circuit.admit().probe
    with pytest.raises(CircuitOpen, match="probe"):
        circuit.admit()


async def test_probe_success_closes_the_circuit(autojump_clock):
    circuit = breaker(threshold=1, cooldown=30.0)
    fail(circuit)
    await trio.sleep(30.0)
    circuit.record_success(circuit.admit())
    assert circuit.state is CircuitState.CLOSED
    assert circuit.snapshot()["consecutive_failures"] == 0
    assert not circuit.admit().probe


async def test_probe_failure_opens_the_circuit_for_a_new_cooldown(autojump_clock):
    circuit = breaker(threshold=1, cooldown=30.0)
    fail(circuit)
    await trio.sleep(30.0)
    circuit.record_failure(circuit.admit(), "timeout")
    assert circuit.state is CircuitState.OPEN
    await trio.sleep(29.0)
    assert circuit.state is CircuitState.OPEN
    await trio.sleep(1.0)
    assert circuit.state is CircuitState.HALF_OPEN


async def test_released_probe_lets_another_probe_through(autojump_clock):
    circuit = breaker(threshold=1, cooldown=30.0)
    fail(circuit)
    await trio.sleep(30.0)
    circuit.release(circuit.admit())
    assert circuit.admit().probe


async def test_snapshot_reports_state_and_last_error(autojump_clock):
    circuit = breaker(threshold=2, cooldown=30.0)
    assert circuit.snapshot() == {
        "state": "closed", "consecutive_failures": 0, "opened_at": None, "retry_in_seconds": 0.0, "last_error": None,
    }
    fail(circuit, 2, error="connection refused")
    await trio.sleep(5.0)
    snapshot = circuit.snapshot()
    assert snapshot["state"] == "open"
    assert snapshot["consecutive_failures"] == 2
    assert isinstance(snapshot["opened_at"], float)
    assert snapshot["retry_in_seconds"] == 25.0
    assert snapshot["last_error"] == "connection refused"


def test_settings_must_be_sane():
    with pytest.raises(ValueError):
        CircuitBreaker(ENDPOINT, failure_threshold=0, cooldown_seconds=1.0)
    with pytest.raises(ValueError):
        CircuitBreaker(ENDPOINT, failure_threshold=1, cooldown_seconds=0.0)
