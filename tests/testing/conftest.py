import pytest

from everos.testing import FakeLLM


@pytest.fixture
async def fake_llm(nursery):
    """A fake OpenAI-compatible server on a loopback port, stopped when the test ends."""
    fake = FakeLLM(dim=16)
    await nursery.start(fake.serve, "127.0.0.1", 0)
    return fake
