"""``everos cascade status|sync|fix|rebuild``: the cascade without a server.

``status`` only reads, so it runs next to a server (it never recovers or takes rows). The others
write the index, so they hold the root lock and refuse with a clear message while a server owns
the root. They open the same services the server does (providers, knowledge, index, cascade), run
the index writer for the duration of the command, and drain the queue before returning.
"""

from __future__ import annotations

from typing import Any

import trio

from everos.cascade import CascadeService
from everos.config import LoadedConfig
from everos.knowledge._service import KnowledgeService
from everos.providers import BuiltinEmbedder
from everos.rootlock import hold_root_lock
from everos.server import Limiters, Runtime
from everos.services import IndexService, ProvidersService, build_cascade
from everos.status import StatusBoard

__all__ = ["run_cascade_command"]


async def run_cascade_command(loaded: LoadedConfig, command: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run one cascade command; return its report (plain data).

    Raises:
        RootLocked: a writing command while a server (or another command) owns the root.
    """
    runtime = Runtime(loaded=loaded, board=StatusBoard(), limiters=Limiters.from_config(loaded))
    if command == "status":
        # Reading the queue needs no index and no model: stand-ins that are never called.
        cascade = CascadeService(sink=lambda rt: None, embedder=lambda rt: BuiltinEmbedder(rt.config.embedding.dim),
                                 search_tokens=lambda text: [], split_facts=lambda text, n: [])
        await cascade.open(runtime, recover=False)
        try:
            return await cascade.status()
        finally:
            await cascade.aclose()
    with hold_root_lock(loaded.root, purpose=f"cascade {command}"):
        providers = ProvidersService()
        knowledge = KnowledgeService()
        index = IndexService(providers, knowledge, reset=command == "rebuild")
        cascade = build_cascade(providers, index, knowledge)
        services = [providers, knowledge, index, cascade]
        try:
            for service in services:
                await service.open(runtime)
            async with trio.open_nursery() as nursery:
                await nursery.start(index.writer.run)
                if command == "sync":
                    report = await cascade.sync(options.get("path"))
                elif command == "fix":
                    report = await cascade.fix(apply=bool(options.get("apply")))
                elif command == "rebuild":
                    report = await cascade.rebuild()
                else:
                    raise ValueError(f"unknown cascade command {command!r}")
                nursery.cancel_scope.cancel()
            return report
        finally:
            with trio.CancelScope(shield=True):
                for service in reversed(services):
                    await service.aclose()


