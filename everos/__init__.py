"""everos: a local-first knowledge server for AI agents that cannot hang.

It speaks the EverOS 1.x knowledge API on Trio structured concurrency; see ``docs/architecture.md``.
"""

from everos.config import Config

__all__ = ["Config", "__version__"]

__version__ = "0.1.0"
