"""``everos cascade status|sync|fix|rebuild``: the cascade without a server.

``status`` only reads, so it runs next to a server (it never recovers or takes rows). The others
write the index, so they hold the root lock and refuse with a clear message while a server owns
the root. They open the same services the server does (providers, knowledge, index, cascade), run
the index writer for the duration of the command, and drain the queue before returning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from everos.cascade import CascadeService
from everos.cascade._service import document_dir_of
from everos.config import LoadedConfig
from everos.errors import CommandError, ExitCode, InvalidInput
from everos.knowledge._service import KnowledgeService
from everos.providers import BuiltinEmbedder
from everos.rootlock import hold_root_lock
from everos.server import Limiters, Runtime
from everos.services import IndexService, ProvidersService, build_cascade
from everos.status import StatusBoard

__all__ = ["run_cascade_command"]


def sync_target(root: Path, path: str) -> str:
    """``cascade sync PATH``'s document directory, relative to the root. ``PATH`` is absolute,
    relative to the working directory (when it exists there) or relative to the root.

    Raises:
        CommandError: ``PATH`` is not a document directory (or a file in one) under the root.
    """
    given = Path(path).expanduser()
    if not given.is_absolute() and given.exists():
        given = given.resolve()
    try:
        return document_dir_of(root, given)
    except InvalidInput as exc:
        raise CommandError(f"cascade sync: {exc.message}; give a document directory (or a file in one) such as "
                           f"{root}/default_app/default_project/knowledge/<Category>/<Title>_<doc_id>",
                           exit_code=ExitCode.USAGE) from None


async def run_cascade_command(loaded: LoadedConfig, command: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run one cascade command; return its report (plain data).

    Raises:
        RootLocked: a writing command while a server (or another command) owns the root.
    """
    runtime = Runtime(loaded=loaded, board=StatusBoard(), limiters=Limiters.from_config(loaded))
    if command == "sync" and options.get("path"):
        options = {**options, "path": sync_target(loaded.root, options["path"])}
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


