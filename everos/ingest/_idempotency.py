"""Idempotency keys: the answer stored for a key replays a retried request (``Idempotency-Key``).

An answer is kept for ``[knowledge] idempotency_ttl_seconds``; a key used again for a different
request (another hash) is a :class:`~everos.errors.Conflict`.
"""

from __future__ import annotations

import json

from everos.errors import Conflict
from everos.ingest import _repository as repo
from everos.ingest._context import IngestContext

__all__ = ["Idempotency"]


class Idempotency:
    """Stored answers by ``(scope, key)``, in the ingest database."""

    def __init__(self, ctx: IngestContext) -> None:
        self._ctx = ctx

    async def answer(self, scope: str, key: str, request_hash: str) -> tuple[int, dict] | None:
        """A stored answer for ``key``; raises ``Conflict`` when the key was used for another request."""
        not_before = self._ctx.clock() - self._ctx.config.knowledge.idempotency_ttl_seconds
        row = await self._ctx.db.read(repo.get_idempotent, scope, key, not_before)
        if row is None:
            return None
        if row["request_hash"] != request_hash:
            raise Conflict("this Idempotency-Key was already used for a different request")
        return row["status"], json.loads(row["body"])

    async def remember(self, scope: str, key: str, request_hash: str, status: int, body: dict) -> None:
        """Store the answer ``(status, body)`` of a request under ``key``."""
        now = self._ctx.clock()
        not_before = now - self._ctx.config.knowledge.idempotency_ttl_seconds
        await self._ctx.db.write(repo.put_idempotent, scope, key, request_hash, status,
                                 json.dumps(body, ensure_ascii=False), now, not_before)
