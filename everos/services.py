"""Which services a server runs, built from its configuration.

The root nursery (``everos.server``) knows services only through the ``Service`` protocol; this is
the one place that names them.
"""

from __future__ import annotations

from everos.config import LoadedConfig
from everos.server import Service

__all__ = ["default_services"]


def default_services(loaded: LoadedConfig) -> list[Service]:
    """The services of a full server for ``loaded``'s root, in start order."""
    return []
