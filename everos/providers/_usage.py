"""What the model endpoints answered: for one piece of work, calls and tokens, counted where the
answers are decoded and credited to whoever opened :func:`counting_usage` around the work; for
one endpoint, its recent tokens per second (:class:`TokenRate`).

An ingest job opens it around its extraction, so ``GET /tasks/{id}`` can say what the document
cost the model. The count travels in a context variable: trio copies the context into child
tasks and worker threads, and they all share the one :class:`ModelUsage`, so it counts the
answers of every call made on the job's behalf, whichever task or thread decoded them.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["ModelUsage", "TokenRate", "counting_usage", "record_usage"]


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


class TokenRate:
    """The tokens one endpoint reported over the last ``window_seconds``: what a watchdog of a
    local model reads as its recent speed (``/health`` providers block). Thread-safe: answers
    are decoded in threads."""

    def __init__(self, window_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_seconds = window_seconds
        self._clock = clock
        self._answers: collections.deque[tuple[float, int, int]] = collections.deque()
        self._lock = threading.Lock()

    def record(self, prompt_tokens: int, completion_tokens: int) -> None:
        """One answer and the tokens it reported."""
        with self._lock:
            self._answers.append((self._clock(), prompt_tokens, completion_tokens))
            self._prune()

    def snapshot(self) -> dict[str, float | int]:
        """Answers in the window and their prompt and completion tokens per second (the window's
        totals over its length). Not a checkpoint."""
        with self._lock:
            self._prune()
            prompt = sum(answer[1] for answer in self._answers)
            completion = sum(answer[2] for answer in self._answers)
            answers = len(self._answers)
        return {"window_seconds": self.window_seconds, "answers": answers,
                "prompt_tokens_per_second": round(prompt / self.window_seconds, 1),
                "completion_tokens_per_second": round(completion / self.window_seconds, 1)}

    def _prune(self) -> None:
        horizon = self._clock() - self.window_seconds
        while self._answers and self._answers[0][0] < horizon:
            self._answers.popleft()
