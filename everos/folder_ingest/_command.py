"""The ``everos ingest`` run: the options, the server to talk to (``--url``, the root's server, or
a full server started in this process), then discover -> resume -> upload -> settle -> summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

from everos.client import ApiClient, server_base_url
from everos.config import load_config, resolve_root
from everos.folder_ingest._lag import LagGate
from everos.folder_ingest._manifest import Manifest, manifest_path
from everos.folder_ingest._settle import settle_all
from everos.folder_ingest._summary import summarize
from everos.folder_ingest._upload import Uploader
from everos.knowledge import validate_app_id, validate_project_id
from everos.rootlock import reachable_url, read_lock_owner

__all__ = ["IngestOptions", "form_fields", "in_process_server", "ingest_command"]

MANIFEST_RELPATH = (".index", "ingest")
# 429/503 retries per upload (each after Retry-After, at most 60 s): minutes of backpressure.
UPLOAD_RETRIES = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class IngestOptions:
    """What ``everos ingest`` was asked to do, beyond the files (the flags' defaults are in
    :mod:`everos.ingest_cli`)."""

    paths: tuple[str, ...]  # the PATH arguments as given: they name the manifest
    root: str | None
    url: str | None
    form: dict[str, str]
    concurrency: int
    wait: bool
    wait_timeout_s: float
    lag_wait_s: float  # the longest pause while the server's index lags; 0: never wait


def form_fields(app_id: str | None, project_id: str | None, category_id: str | None) -> dict[str, str]:
    """The form fields every upload carries, validated once here rather than refused per file.

    Raises:
        InvalidInput: a malformed scope id.
    """
    form = {}
    if app_id is not None:
        form["app_id"] = validate_app_id(app_id)
    if project_id is not None:
        form["project_id"] = validate_project_id(project_id)
    if category_id:
        form["category_id"] = category_id
    return form


def _manifest_folder(options: IngestOptions, root: Path) -> Path:
    if options.url and not options.root:
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return state / "everos" / "ingest"
    return root.joinpath(*MANIFEST_RELPATH)


@contextlib.asynccontextmanager
async def in_process_server(root: Path) -> AsyncIterator[str]:
    """A full server for ``root`` in this process on 127.0.0.1, port 0; yields its base URL and
    stops it in an orderly way on exit (queued work stays durable for the next server).

    Raises:
        RootLocked: another process owns the root.
        ConfigError: the root has no valid ``everos.toml``.
    """
    from everos.runtime import Runtime
    from everos.server import serve
    from everos.services import open_services

    loaded = load_config(root, overrides={("api", "host"): "127.0.0.1", ("api", "port"): 0})
    runtimes: list[Runtime] = []
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(serve, loaded, services=open_services,
                                                      runtime_ready=runtimes.append))
        try:
            yield reachable_url(binds[0])
        finally:
            runtimes[0].request_stop()


@contextlib.asynccontextmanager
async def _server(root: Path, url: str | None) -> AsyncIterator[tuple[str, bool]]:
    """``(base URL, in process)``: ``url``, else the root's owner, else a server of our own."""
    if url or read_lock_owner(root) is not None:
        yield server_base_url(root, url), False
    else:
        async with in_process_server(root) as base_url:
            yield base_url, True


async def ingest_command(files: list[Path], options: IngestOptions) -> dict[str, Any]:
    """Ingest ``files`` as ``options`` say; return the summary (:func:`summarize`). Progress and
    notes go to stderr.

    Raises:
        CommandError: the server cannot be reached (``UNREACHABLE``); what was acknowledged
            until then is in the manifest, so a rerun resumes.
        RootLocked, ConfigError: see :func:`in_process_server`.
    """
    started = time.monotonic()
    root = resolve_root(options.root)
    target = f"url:{options.url.rstrip('/')}" if options.url else f"root:{root.absolute()}"
    manifest = await Manifest.open(manifest_path(_manifest_folder(options, root), target, options.form, options.paths))
    async with _server(root, options.url) as (base_url, in_process), \
            ApiClient(base_url, max_retries=UPLOAD_RETRIES, max_connections=options.concurrency + 1) as client:
        lag_gate = LagGate(client, max_wait_s=options.lag_wait_s)
        uploader = Uploader(client, manifest, options.form, concurrency=options.concurrency,
                            respond_async=not options.wait, lag_gate=lag_gate)
        resumed, to_send = await uploader.resumable(files)
        if resumed:
            print(f"everos ingest: resuming: {len(resumed)} of {len(files)} files already acknowledged "
                  f"(manifest {manifest.path})", file=sys.stderr)
        sent = await uploader.send_all(to_send, sys.stderr)
        upload_s = time.monotonic() - started
        records = resumed + sent
        if options.wait:
            records = await settle_all(client, manifest, records, options.wait_timeout_s, sys.stderr)
        elif in_process and any(r.status == "accepted" for r in records):
            print("everos ingest: accepted documents stay queued; a server on this root extracts and indexes "
                  "them when it next runs", file=sys.stderr)
    return summarize(records, resumed={r.path for r in resumed}, waited=options.wait, server=base_url,
                     manifest=manifest.path, upload_s=upload_s, total_s=time.monotonic() - started,
                     lag_pauses=lag_gate.pauses, lag_wait_s=lag_gate.waited_s)
