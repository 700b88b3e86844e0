"""Rates per API key, and when each key was last used (issue #16 items 1 and 2).

Each key has a rate (issue #16 item 2): :class:`RateLimiter` holds a token bucket of requests per
second with a burst, and a count of uploads in flight, per key. The server's defaults are
``[api] key_requests_per_second``, ``key_burst`` and ``key_concurrent_uploads``; ``everos keys
create --rate R --burst B --uploads N`` gives one key its own. A request over either gets 429
``RATE_LIMITED`` with ``Retry-After``.

The server remembers when each key was last used (:class:`KeyUsage`) and writes it, at most every
``USAGE_FLUSH_INTERVAL_S`` and when it stops, to ``<root>/.keys-used.json``: a file of its own, so
the server never writes the key file that ``everos keys`` changes. ``everos keys list`` shows it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from everos.auth import ApiKey
from everos.store import atomic_write_bytes_sync

__all__ = ["USAGE_FILENAME", "USAGE_FLUSH_INTERVAL_S", "KeyUsage", "RateLimit", "RateLimiter", "last_used"]

USAGE_FILENAME = ".keys-used.json"
# How often a running server writes when its keys were last used, at most.
USAGE_FLUSH_INTERVAL_S = 30.0


# -- rates ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """What one key may send: ``requests_per_second`` on average, ``burst`` at once, and
    ``concurrent_uploads`` uploads in flight (0: no limit, for either)."""

    requests_per_second: float
    burst: int
    concurrent_uploads: int

    def for_key(self, key: ApiKey) -> RateLimit:
        """This default with the key's own rates, where it has them."""
        return RateLimit(*(getattr(self, f.name) if getattr(key, f.name) is None else getattr(key, f.name)
                           for f in dataclasses.fields(self)))


class RateLimiter:
    """A token bucket and an upload count per key. Used on the event loop only; not a checkpoint.

    A bucket holds at most ``burst`` tokens (at least one) and gains ``requests_per_second`` a
    second; a request takes one. :meth:`admit` answers how long to wait when the bucket is empty;
    :meth:`start_upload` whether one more upload may run. State is kept per key id: it grows with
    the keys, which an operator makes, never with the requests.
    """

    def __init__(self, default: RateLimit, clock: Any = time.monotonic) -> None:
        self.default = default
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)
        self._uploads: dict[str, int] = {}

    def admit(self, key: ApiKey) -> float:
        """Take a token for ``key``: 0 when it had one, else the seconds until it will."""
        limit = self.default.for_key(key)
        if limit.requests_per_second <= 0:
            return 0.0
        capacity = max(1.0, float(limit.burst))
        now = self.clock()
        tokens, at = self._buckets.get(key.id, (capacity, now))
        tokens = min(capacity, tokens + (now - at) * limit.requests_per_second)
        if tokens >= 1.0:
            self._buckets[key.id] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key.id] = (tokens, now)
        return (1.0 - tokens) / limit.requests_per_second

    def start_upload(self, key: ApiKey) -> bool:
        """Count one more upload in flight for ``key``; False (nothing counted) when it has its
        ``concurrent_uploads`` already."""
        limit = self.default.for_key(key).concurrent_uploads
        running = self._uploads.get(key.id, 0)
        if limit > 0 and running >= limit:
            return False
        self._uploads[key.id] = running + 1
        return True

    def end_upload(self, key: ApiKey) -> None:
        running = self._uploads.get(key.id, 0) - 1
        if running > 0:
            self._uploads[key.id] = running
        else:
            self._uploads.pop(key.id, None)


# -- last use -----------------------------------------------------------------------------------------


def usage_path(root: Path) -> Path:
    return Path(root) / USAGE_FILENAME


def last_used(root: Path) -> dict[str, str]:
    """When each key was last used, as the server last wrote it (key id -> ISO time); {} when it
    never wrote, or the file is unreadable (it is a hint, not a record)."""
    try:
        body = json.loads(usage_path(root).read_bytes())
        return {str(key_id): str(at) for key_id, at in body["last_used"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


class KeyUsage:
    """When each key was last used, noted in memory per request (:meth:`note`, not a checkpoint)
    and written by :meth:`flush` (blocking: run it in a thread) when something changed."""

    def __init__(self, root: Path) -> None:
        self.path = usage_path(root)
        self._seen: dict[str, float] = {}
        self._dirty = False

    def note(self, key: ApiKey) -> None:
        self._seen[key.id] = time.time()
        self._dirty = True

    def flush(self) -> bool:
        """Write the times if any changed since the last write (merged with the file's, so a
        restart keeps older ones); True when it wrote."""
        if not self._dirty:
            return False
        self._dirty = False
        merged = {**last_used(self.path.parent), **{
            key_id: dt.datetime.fromtimestamp(at, dt.timezone.utc).isoformat(timespec="seconds")
            for key_id, at in dict(self._seen).items()}}
        atomic_write_bytes_sync(self.path, (json.dumps({"last_used": merged}, indent=2) + "\n").encode(),
                                mode=0o600)
        return True
