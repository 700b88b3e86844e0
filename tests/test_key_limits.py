"""Rates per API key and when each key was last used (issue #16 items 1 and 2), without a server."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from everos.auth import create_key, is_upload, list_keys
from everos.errors import InvalidInput
from everos.key_limits import USAGE_FILENAME, KeyUsage, RateLimit, RateLimiter, last_used


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(root: Path, **rates):
    return create_key(root, "write", **rates)[1]


def test_a_bucket_allows_its_burst_then_its_rate_and_says_how_long_to_wait(tmp_path: Path) -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(requests_per_second=2.0, burst=3, concurrent_uploads=0), clock)
    record = key(tmp_path)
    assert [limiter.admit(record) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.admit(record) == pytest.approx(0.5)  # empty: one token in half a second
    clock.now += 0.5
    assert limiter.admit(record) == 0.0
    assert limiter.admit(record) == pytest.approx(0.5)
    clock.now += 60  # refills to the burst, not beyond
    assert [limiter.admit(record) for _ in range(4)][-1] == pytest.approx(0.5)


def test_each_key_has_its_own_bucket_and_its_own_rates(tmp_path: Path) -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(requests_per_second=1.0, burst=1, concurrent_uploads=1), clock)
    plain, fast, free = key(tmp_path), key(tmp_path, requests_per_second=100.0, burst=5), \
        key(tmp_path, requests_per_second=0.0, concurrent_uploads=0)
    assert limiter.admit(plain) == 0.0 and limiter.admit(plain) > 0
    assert all(limiter.admit(fast) == 0.0 for _ in range(5))  # its burst, not the default's
    assert all(limiter.admit(free) == 0.0 for _ in range(1000))  # 0: no limit
    assert limiter.start_upload(plain) and not limiter.start_upload(plain)
    assert all(limiter.start_upload(free) for _ in range(50))
    limiter.end_upload(plain)
    assert limiter.start_upload(plain)


def test_rates_are_stored_with_the_key_and_old_key_files_still_load(tmp_path: Path) -> None:
    key(tmp_path, requests_per_second=2.5, burst=4, concurrent_uploads=1)
    key(tmp_path)
    own, default = list_keys(tmp_path)
    assert (own.requests_per_second, own.burst, own.concurrent_uploads) == (2.5, 4, 1)
    assert (default.requests_per_second, default.burst, default.concurrent_uploads) == (None, None, None)
    stored = json.loads((tmp_path / ".keys.json").read_text())["keys"]
    assert "burst" not in stored[1]  # a key without rates is stored as before rates existed
    with pytest.raises(InvalidInput) as refused:
        create_key(tmp_path, "read", requests_per_second=-1.0)
    assert refused.value.field == "requests_per_second"
    with pytest.raises(InvalidInput):
        create_key(tmp_path, "read", requests_per_second=float("nan"))
    assert len(list_keys(tmp_path)) == 2  # nothing written for a refused key


@pytest.mark.parametrize(("method", "path", "upload"), [
    ("POST", "/api/v1/knowledge/documents", True),
    ("PUT", "/api/v1/knowledge/documents/d_0123456789ab", True),
    ("post", "/api/v2/knowledge/documents/", True),
    ("PATCH", "/api/v1/knowledge/documents/d_0123456789ab", False),
    ("GET", "/api/v1/knowledge/documents", False),
    ("POST", "/api/v1/knowledge/documents/d_0123456789ab/reextract", False),
    ("POST", "/api/v1/knowledge/search", False),
])
def test_uploads_are_the_routes_that_take_a_documents_bytes(method: str, path: str, upload: bool) -> None:
    assert is_upload(method, path) is upload


def test_last_use_is_written_only_when_it_changed_merged_and_private(tmp_path: Path) -> None:
    first, second = key(tmp_path), key(tmp_path)
    usage = KeyUsage(tmp_path)
    assert usage.flush() is False and last_used(tmp_path) == {}
    usage.note(first)
    assert usage.flush() is True and usage.flush() is False
    assert set(last_used(tmp_path)) == {first.id}
    assert stat.S_IMODE((tmp_path / USAGE_FILENAME).stat().st_mode) == 0o600
    later = KeyUsage(tmp_path)  # a restarted server keeps the times written before
    later.note(second)
    later.flush()
    assert set(last_used(tmp_path)) == {first.id, second.id}
    (tmp_path / USAGE_FILENAME).write_text("not json")
    assert last_used(tmp_path) == {}  # a hint: an unreadable file is no use, never an error
