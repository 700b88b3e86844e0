"""Which services a server runs, and the routes that serve them, built from its configuration.

The root nursery (``everos.server``) knows services only through the ``Service`` protocol; this is
the one place that names them and pairs each with its blueprints (the web layer imports services,
never the other way round).
"""

from __future__ import annotations

from quart import Blueprint

from everos.config import LoadedConfig
from everos.knowledge._service import KnowledgeService
from everos.server import Service
from everos.web._knowledge import knowledge_blueprints

__all__ = ["build_services"]


def build_services(loaded: LoadedConfig) -> tuple[list[Service], list[Blueprint]]:
    """The services of a full server for ``loaded``'s root, in start order, and their routes."""
    knowledge = KnowledgeService()
    return [knowledge], knowledge_blueprints(knowledge)
