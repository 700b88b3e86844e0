"""Which services a server runs, and the routes that serve them, built from its configuration.

The root nursery (``everos.server``) knows services only through the ``Service`` protocol; this is
the one place that names them and pairs each with its blueprints (the web layer imports services,
never the other way round).
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from everos.config import LoadedConfig
from everos.knowledge._extractor import BuiltinExtractor, Extractor
from everos.knowledge._llm_extractor import LLMExtractor
from everos.knowledge._service import KnowledgeService
from everos.providers import make_chat
from everos.server import Service
from everos.web._knowledge import knowledge_blueprints

__all__ = ["build_services"]


def build_services(loaded: LoadedConfig) -> tuple[list[Service], list[Blueprint]]:
    """The services of a full server for ``loaded``'s root, in start order, and their routes."""
    knowledge = KnowledgeService(extractor_factory=_make_extractor)
    return [knowledge], knowledge_blueprints(knowledge)


def _make_extractor(runtime: Any) -> Extractor:
    """The LLM extractor when ``[llm] provider`` names an endpoint, else the built-in one.

    The chat client is created here, when the service opens, and closed with the service
    (``KnowledgeService.aclose`` closes the extractor). Raises ConfigError without a base_url.
    """
    settings = runtime.config.llm
    chat = make_chat(settings)
    if chat is None:
        return BuiltinExtractor(runtime.limiters.cpu)
    return LLMExtractor(chat, settings, runtime.limiters.cpu)
