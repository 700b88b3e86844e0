"""The composed server: model providers are reported in /health."""

from __future__ import annotations

from pathlib import Path

import trio

from everos.server import is_loopback
from everos.testing import FakeLLM

from .conftest import knowledge_server


async def test_health_reports_each_model_endpoint_and_its_circuit(root: Path, nursery) -> None:
    fake = FakeLLM()
    await nursery.start(fake.serve, "127.0.0.1", 0)
    async with knowledge_server(root, llm__provider="openai", llm__base_url=fake.base_url,
                                llm__model="fake") as server:
        providers = (await server.client.get("/health")).json()["providers"]
        assert providers["llm"]["provider"] == "openai"
        assert providers["llm"]["circuit"]["state"] == "closed"
        assert providers["embedding"]["provider"] == "builtin"
        assert providers["rerank"] == {"provider": "none"}
    nursery.cancel_scope.cancel()


def test_loopback_detection_for_the_bind_warning() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1") and not is_loopback("example.org")


async def test_server_without_llm_uses_the_builtin_extractor(root: Path) -> None:
    async with knowledge_server(root) as server:
        with trio.fail_after(5):
            response = await server.client.post("/api/v1/knowledge/documents",
                                                files={"file": ("a.md", b"# A\n\nText.\n")}, data={"title": "A"})
        assert response.status_code == 201
