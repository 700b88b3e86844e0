"""Provider errors: one family under ExternalServiceUnavailable, messages naming the endpoint."""

import pytest

from everos.errors import ExternalServiceUnavailable
from everos.providers import (
    CircuitOpen,
    EmbeddingDimensionError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeout,
)

ENDPOINT = "embedding endpoint http://127.0.0.1:8080/v1"


@pytest.mark.parametrize(
    "error",
    [
        ProviderTimeout(ENDPOINT, "slow"),
        ProviderConnectionError(ENDPOINT, "refused"),
        ProviderHTTPError(ENDPOINT, 503),
        ProviderResponseError(ENDPOINT, "not JSON"),
        EmbeddingDimensionError(ENDPOINT, "too narrow"),
        CircuitOpen(ENDPOINT, "open"),
    ],
)
def test_every_provider_error_is_an_external_service_error(error):
    assert isinstance(error, ProviderError)
    assert isinstance(error, ExternalServiceUnavailable)
    assert error.status == 503 and error.code == "EXTERNAL_SERVICE_UNAVAILABLE"
    assert str(error).startswith(ENDPOINT)


def test_with_attempts_rewrites_the_count_and_keeps_the_fields():
    error = ProviderHTTPError(ENDPOINT, 429, body_excerpt="slow down", retry_after_seconds=2.0)
    again = error.with_attempts(4)
    assert str(error) == f"{ENDPOINT}: HTTP 429: slow down (1 attempt)"
    assert str(again) == f"{ENDPOINT}: HTTP 429: slow down (4 attempts)"
    assert (again.status, again.retry_after_s, again.attempts) == (429, 2.0, 4)
    assert type(again) is ProviderHTTPError


def test_circuit_open_message_has_no_attempt_count():
    error = CircuitOpen(ENDPOINT, "circuit open", retry_after_s=3.0)
    assert str(error) == f"{ENDPOINT}: circuit open"
    assert error.retry_after_s == 3.0
