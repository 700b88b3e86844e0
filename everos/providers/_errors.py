"""Errors raised by model endpoints (LLM, embedding, rerank).

Every one is an :class:`~everos.errors.ExternalServiceUnavailable` (503
``EXTERNAL_SERVICE_UNAVAILABLE`` at the HTTP edge), so a caller that does not care why a model
failed catches one class::

    ExternalServiceUnavailable
    └── ProviderError                 names the endpoint and how many attempts were made
        ├── ProviderTimeout           an attempt or the whole call ran out of time
        ├── ProviderConnectionError   could not connect, or the connection closed mid-answer
        ├── ProviderHTTPError         the endpoint answered with a non-2xx status (``status``)
        ├── ProviderResponseError     the endpoint answered, but not in a usable shape
        │   └── EmbeddingDimensionError  vectors narrower than the configured ``dim``
        └── CircuitOpen               too many consecutive failures: failing fast for a while

A caller's own cancellation is never turned into one of these: ``trio.Cancelled`` propagates.
"""

from __future__ import annotations

from everos.errors import ExternalServiceUnavailable

__all__ = [
    "CircuitOpen",
    "EmbeddingDimensionError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderResponseError",
    "ProviderTimeout",
]


class ProviderError(ExternalServiceUnavailable):
    """A model endpoint failed. ``endpoint`` names it, ``attempts`` counts the tries made."""

    def __init__(
        self, endpoint: str, detail: str, *, attempts: int = 1, retry_after_s: float | None = None
    ) -> None:
        self.endpoint = endpoint
        self.detail = detail
        self.attempts = attempts
        super().__init__(self._render(), retry_after_s=retry_after_s)

    def _render(self) -> str:
        tries = "1 attempt" if self.attempts == 1 else f"{self.attempts} attempts"
        return f"{self.endpoint}: {self.detail} ({tries})"

    def with_attempts(self, attempts: int) -> ProviderError:
        """A copy of this error that reports ``attempts`` tries (the policy knows the count)."""
        # Exceptions rebuild from ``args`` when copied, which our keyword fields do not fit.
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.attempts = attempts
        clone.message = clone._render()
        clone.args = (clone.message,)
        return clone


class ProviderTimeout(ProviderError):
    """No complete answer within the attempt timeout or the call deadline."""


class ProviderConnectionError(ProviderError):
    """Connecting failed, or the endpoint closed the connection before a complete answer."""


class ProviderHTTPError(ProviderError):
    """The endpoint answered ``status`` (not 2xx). ``body_excerpt`` holds the start of its body.

    ``retry_after_seconds`` is the endpoint's ``Retry-After`` (already capped by the policy), or
    None when it sent none.
    """

    def __init__(
        self,
        endpoint: str,
        status: int,
        *,
        body_excerpt: str = "",
        retry_after_seconds: float | None = None,
        attempts: int = 1,
    ) -> None:
        self.status = status
        self.body_excerpt = body_excerpt
        self.retry_after_seconds = retry_after_seconds
        detail = f"HTTP {status}"
        if body_excerpt:
            detail += f": {body_excerpt}"
        super().__init__(endpoint, detail, attempts=attempts, retry_after_s=retry_after_seconds)


class ProviderResponseError(ProviderError):
    """The endpoint answered 2xx but the answer is unusable (not JSON, wrong shape, no object).

    ``content`` holds the model's raw text when there was one (capped), so a caller can ask the
    model to repair its own answer.
    """

    def __init__(self, endpoint: str, detail: str, *, content: str = "", attempts: int = 1) -> None:
        self.content = content
        super().__init__(endpoint, detail, attempts=attempts)


class EmbeddingDimensionError(ProviderResponseError):
    """The embedding model returns vectors narrower than ``[embedding] dim``."""


class CircuitOpen(ProviderError):
    """The endpoint failed too often in a row; calls fail at once until the cooldown ends.

    ``retry_after_s`` is the time left before one probe call is let through.
    """

    def __init__(self, endpoint: str, detail: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(endpoint, detail, attempts=0, retry_after_s=retry_after_s)

    def _render(self) -> str:
        return f"{self.endpoint}: {self.detail}"
