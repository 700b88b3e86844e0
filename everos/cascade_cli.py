"""``everos cascade status|sync|fix|rebuild``: the cascade without a server, or through it.

``status`` and ``fix`` (without ``--apply``) only read, so they run next to a server (they never
recover or take rows, and write nothing). ``sync``, ``rebuild`` and ``fix --apply`` write the
index, so they hold the root lock: they open the same services the server does
(``everos.services.open_services``, without MCP), run the index writer for the duration of the
command, and drain the queue before returning. ``rebuild`` opens the index emptied, embeds in a
worker process (its CPU off this process's GIL) and shows its progress on the stream it is given
(stderr from the command line): a bar on a terminal, a plain line every few seconds otherwise; its
report on stdout stays the same. While a server owns the
root, ``sync`` and ``rebuild`` refuse with a clear message, and ``fix --apply`` asks that server
(``POST /api/v1/cascade/fix``, at the URL the server recorded in the lock) to queue the rows again
for its own index workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TextIO

import trio

from everos.cascade._service import document_dir_of
from everos.client import ApiClient, server_base_url
from everos.config import LoadedConfig
from everos.errors import CommandError, ExitCode, InvalidInput
from everos.folder_ingest import Progress
from everos.rootlock import hold_root_lock, read_lock_owner
from everos.runtime import Runtime
from everos.services import open_cascade_reader, open_services

__all__ = ["fix_through_server", "run_cascade_command"]

FIX_PATH = "/api/v1/cascade/fix"
# The server answers within its request deadline ([api] request_timeout_seconds) and never waits
# for the rows to be indexed; this only bounds a server that does not answer at all.
SERVER_FIX_TIMEOUT_S = 120.0


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


async def run_cascade_command(loaded: LoadedConfig, command: str, options: dict[str, Any], *,
                              progress_stream: TextIO | None = None) -> dict[str, Any]:
    """Run one cascade command; return its report (plain data). ``rebuild`` shows its progress
    on ``progress_stream`` when one is given.

    Raises:
        RootLocked: ``sync`` or ``rebuild`` while a server (or another command) owns the root.
        CommandError: ``fix --apply`` while the root's owner cannot take it (see
            :func:`fix_through_server`).
    """
    runtime = Runtime.for_config(loaded)
    if command == "sync" and options.get("path"):
        options = {**options, "path": sync_target(loaded.root, options["path"])}
    if command == "status":
        async with open_cascade_reader(runtime) as cascade:
            return await cascade.status()
    if command == "fix" and not options.get("apply"):
        async with open_cascade_reader(runtime) as cascade:
            return await cascade.fix()
    if command == "fix" and read_lock_owner(loaded.root) is not None:
        return await fix_through_server(loaded.root)
    with hold_root_lock(loaded.root, purpose=f"cascade {command}"):
        async with open_services(runtime, mcp_transport=None, reset_index=command == "rebuild",
                                 conversion=False, embedding_workers=command == "rebuild") as services:
            cascade = services.cascade
            async with trio.open_nursery() as nursery:
                await nursery.start(services.index.writer.run)
                if command == "sync":
                    report = await cascade.sync(options.get("path"))
                elif command == "fix":
                    report = await cascade.fix(apply=True)
                elif command == "rebuild":
                    report = await rebuild_with_progress(cascade, progress_stream)
                else:
                    raise ValueError(f"unknown cascade command {command!r}")
                nursery.cancel_scope.cancel()
            return report


async def rebuild_with_progress(cascade: Any, stream: TextIO | None) -> dict[str, Any]:
    """``cascade.rebuild`` into the index the command emptied, its progress on ``stream`` (none
    without one): :class:`~everos.folder_ingest.Progress` of the documents queued."""
    progress: Progress | None = None

    def on_progress(done: int, failed: int, total: int) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress("cascade rebuild", total, stream, unit="document")
        progress.advance_to(done, failed=failed)

    try:
        return await cascade.rebuild(index_emptied=True, on_progress=None if stream is None else on_progress)
    finally:
        if progress is not None:
            progress.close()


async def fix_through_server(root: Path) -> dict[str, Any]:
    """``cascade fix --apply`` through the server that owns ``root``: its report (the rows and
    how many were ``requeued`` for its index workers), plus the ``server`` it came from.

    Raises:
        CommandError: the owner serves no HTTP (a CLI command, ``everos mcp`` over stdio), does
            not answer within ``SERVER_FIX_TIMEOUT_S``, or answers with an error (``UNREACHABLE``).
    """
    server = server_base_url(root, None)
    try:
        async with ApiClient(server, timeout_s=SERVER_FIX_TIMEOUT_S, max_retries=0) as client:
            report = await client.data("POST", FIX_PATH, json={"apply": True})
    except CommandError as exc:
        raise CommandError(f"cascade fix --apply: the everos server at {server} (the root's owner) did not take "
                           f"the fix: {exc.message}", exit_code=ExitCode.UNREACHABLE) from None
    return {**report, "server": server}
