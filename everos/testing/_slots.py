"""How long a local model server takes: slots, a queue in front of them, prefill and decode rates.

llama-server runs a fixed number of slots (often one on a consumer GPU); a request beyond them
waits in a first-come queue, and a request in a slot takes about ``prompt_tokens / prefill`` plus
``completion_tokens / decode`` seconds. :class:`SlotModel` reproduces that timing for the fake
(``FakeLLM(speed=ModelSpeed(...))``) and counts what a watchdog of such a server would watch: busy
time per slot, queue wait, tokens in and out. Time is ``trio.current_time()``, so tests run it on a
virtual clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from everos.providers._openai import estimate_tokens  # the client's own estimate, re-exported

__all__ = ["ModelSpeed", "SlotModel", "estimate_tokens"]


@dataclass(frozen=True)
class ModelSpeed:
    """The speed of the model behind the fake. The defaults are typical of a 9B model on one
    consumer GPU (llama-server, one slot); embeddings, from a small embedding model, share the
    slots at their own rate."""

    slots: int = 1
    prefill_tokens_per_second: float = 1500.0
    decode_tokens_per_second: float = 40.0
    embed_tokens_per_second: float = 20000.0

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError("slots must be at least 1")
        for name in ("prefill_tokens_per_second", "decode_tokens_per_second", "embed_tokens_per_second"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0")

    def seconds(self, route: str, prompt_tokens: int, completion_tokens: int) -> float:
        """How long one request of ``route`` holds its slot."""
        return sum(self.phases(route, prompt_tokens, completion_tokens))

    def phases(self, route: str, prompt_tokens: int, completion_tokens: int) -> tuple[float, float]:
        """``(prefill, decode)`` seconds of one request of ``route`` (embeddings: all prefill)."""
        if route == "embeddings":
            return prompt_tokens / self.embed_tokens_per_second, 0.0
        return prompt_tokens / self.prefill_tokens_per_second, completion_tokens / self.decode_tokens_per_second


class SlotModel:
    """The slots and their queue. :meth:`run` waits for a free slot (first come, first served) and
    holds it for the request's time; cancelling it (the client gave up) frees the slot."""

    def __init__(self, speed: ModelSpeed) -> None:
        self.speed = speed
        self._limiter = trio.CapacityLimiter(speed.slots)
        self._free = list(range(speed.slots))
        self._busy_seconds = [0.0] * speed.slots
        self._requests = [0] * speed.slots
        self._queued = 0
        self._queue_wait_total = 0.0
        self._queue_wait_max = 0.0
        self._tokens_in = 0
        self._tokens_out = 0
        self._routes: dict[str, dict[str, float]] = {}
        self._started_at: float | None = None
        self._last_end: float | None = None  # when the latest request finished

    async def run(self, route: str, prompt_tokens: int, completion_tokens: int, *,
                  emit: Callable[[float], Awaitable[None]] | None = None) -> None:
        """Hold a slot for the request's time. ``emit(decode_seconds)``, for a streamed answer, is
        awaited after the prefill, in the slot: it sends the answer over ``decode_seconds``."""
        if self._started_at is None:
            self._started_at = trio.current_time()
        arrived = trio.current_time()
        self._queued += 1
        try:
            await self._limiter.acquire()
        finally:
            self._queued -= 1
        slot = self._free.pop(0)
        began = trio.current_time()
        wait = began - arrived
        self._queue_wait_total += wait
        self._queue_wait_max = max(self._queue_wait_max, wait)
        per_route = self._routes.setdefault(route, {"requests": 0, "tokens_in": 0, "tokens_out": 0,
                                                    "busy_seconds": 0.0})
        try:
            prefill, decode = self.speed.phases(route, prompt_tokens, completion_tokens)
            if emit is None:
                await trio.sleep(prefill + decode)
            else:
                await trio.sleep(prefill)
                await emit(decode)
            self._tokens_in += prompt_tokens
            self._tokens_out += completion_tokens
            per_route["tokens_in"] += prompt_tokens
            per_route["tokens_out"] += completion_tokens
        finally:
            per_route["requests"] += 1
            per_route["busy_seconds"] += trio.current_time() - began
            self._busy_seconds[slot] += trio.current_time() - began
            self._last_end = trio.current_time()
            self._requests[slot] += 1
            self._free.append(slot)
            self._limiter.release()

    def metrics(self) -> dict[str, Any]:
        """Plain data: per slot busy seconds and requests, queue now and waited, tokens in and out
        (in all and per route: requests, tokens, busy seconds), and the busy fraction since the
        first request: until now, and until the latest request finished (``busy_fraction_working``:
        the model's idle share while it had work, when work arrives faster than it serves)."""
        elapsed = 0.0 if self._started_at is None else trio.current_time() - self._started_at
        working = 0.0 if self._last_end is None or self._started_at is None else self._last_end - self._started_at
        busy = sum(self._busy_seconds)
        return {
            "slots": [{"slot": i, "busy_seconds": round(b, 6), "requests": n}
                      for i, (b, n) in enumerate(zip(self._busy_seconds, self._requests))],
            "running": self.speed.slots - len(self._free),
            "queued": self._queued,
            "queue_wait_seconds_total": round(self._queue_wait_total, 6),
            "queue_wait_seconds_max": round(self._queue_wait_max, 6),
            "tokens_in": self._tokens_in,
            "tokens_out": self._tokens_out,
            "routes": {route: {**counts, "busy_seconds": round(counts["busy_seconds"], 6)}
                       for route, counts in sorted(self._routes.items())},
            "busy_fraction": round(busy / (elapsed * self.speed.slots), 4) if elapsed > 0 else 0.0,
            "busy_fraction_working": round(busy / (working * self.speed.slots), 4) if working > 0 else 0.0,
            "speed": {"slots": self.speed.slots, "prefill_tokens_per_second": self.speed.prefill_tokens_per_second,
                      "decode_tokens_per_second": self.speed.decode_tokens_per_second,
                      "embed_tokens_per_second": self.speed.embed_tokens_per_second},
        }
