"""What the model endpoints answered for one piece of work: calls and tokens, counted where the
answers are decoded and credited to whoever opened :func:`counting_usage` around the work.

An ingest job opens it around its extraction, so ``GET /tasks/{id}`` can say what the document
cost the model. The count travels in a context variable: trio copies the context into child
tasks and worker threads, and they all share the one :class:`ModelUsage`, so it counts the
answers of every call made on the job's behalf, whichever task or thread decoded them.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator

__all__ = ["ModelUsage", "counting_usage", "record_usage"]


class ModelUsage:
    """Answers and their tokens. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def add(self, prompt_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.calls += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {"calls": self.calls, "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens}


_CURRENT: contextvars.ContextVar[ModelUsage | None] = contextvars.ContextVar("everos_model_usage", default=None)


@contextlib.contextmanager
def counting_usage(usage: ModelUsage) -> Iterator[ModelUsage]:
    """Credit the model answers decoded inside the block (and in the tasks and threads it starts)
    to ``usage``."""
    token = _CURRENT.set(usage)
    try:
        yield usage
    finally:
        _CURRENT.reset(token)


def record_usage(prompt_tokens: int, completion_tokens: int) -> None:
    """One answer, to the :class:`ModelUsage` of the work it was made for (if any). Not a checkpoint."""
    usage = _CURRENT.get()
    if usage is not None:
        usage.add(prompt_tokens, completion_tokens)
