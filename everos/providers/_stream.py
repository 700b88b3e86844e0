"""A streamed chat answer (server-sent events) read into the answer an unstreamed call gives.

OpenAI-compatible servers (llama-server, Ollama, vLLM, OpenAI) stream ``data: {chunk}`` lines,
each chunk's ``choices[0].delta.content`` a piece of the answer, the finish reason in the last
one, ``usage`` in a final chunk when ``stream_options.include_usage`` is asked, then
``data: [DONE]``. Pure: bytes in, the answer out.
"""

from __future__ import annotations

import json
from typing import Any

from everos.providers._errors import ProviderConnectionError, ProviderResponseError

__all__ = ["EventStream"]


class EventStream:
    """A streamed chat answer read from its server-sent events (``data: {chunk}`` lines, then
    ``data: [DONE]``): the content pieces of ``choices[0].delta``, the ``usage`` a chunk carries
    (the last one, with ``stream_options.include_usage``) and whether it finished, in at most
    ``max_bytes``."""

    def __init__(self, endpoint: str, max_bytes: int) -> None:
        self.endpoint = endpoint
        self.max_bytes = max_bytes
        self.size = 0
        self._pending = b""
        self._content: list[str] = []
        self._usage: Any = None
        self._finished = False

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise ProviderResponseError(self.endpoint, f"answer larger than {self.max_bytes} bytes")
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(line.strip())

    def _line(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return  # a comment, an event name or the blank line between events
        data = line[5:].strip()
        if data == b"[DONE]":
            self._finished = True
            return
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
            raise ProviderResponseError(self.endpoint, f"a streamed chunk is not JSON: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:
            raise ProviderResponseError(self.endpoint, f"the stream reported an error: {str(chunk['error'])[:200]}")
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                self._content.append(delta["content"])
            if choice.get("finish_reason"):
                self._finished = True

    def answer(self) -> dict[str, Any]:
        """The answer as an unstreamed one would be. Raises ProviderConnectionError for a stream
        that ended before a finish reason or ``[DONE]``."""
        self._line(self._pending.strip())
        if not self._finished:
            raise ProviderConnectionError(self.endpoint, "the answer stream ended before the answer was complete")
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(self._content)}}],
                "usage": self._usage}
