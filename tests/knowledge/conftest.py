"""Fixtures of the knowledge tests: the fake model server on loopback."""

from __future__ import annotations

import pytest

from everos.testing import FakeLLM


@pytest.fixture
async def fake(nursery) -> FakeLLM:
    """A fake OpenAI-compatible server with no faults, serving on a free loopback port."""
    fake = FakeLLM()
    await nursery.start(fake.serve, "127.0.0.1", 0)
    return fake
