"""Shared fixtures: a root with a config, and the real server started in-process on loopback."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from everos.config import LoadedConfig, load_config, render_template
from everos.server import Runtime, serve


def write_config(root: Path, text: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "everos.toml"
    path.write_text(render_template() if text is None else text, encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A memory root holding the default ``everos.toml``."""
    write_config(tmp_path / "root")
    return tmp_path / "root"


def loaded_config(root: Path, **overrides: Any) -> LoadedConfig:
    """Load ``root``'s config with ``section__key=value`` overrides, on port 0 by default."""
    pairs = {("api", "port"): 0}
    for name, value in overrides.items():
        section, key = name.split("__", 1)
        pairs[(section.replace("_search", ".search"), key)] = value
    return load_config(root, environ={}, overrides=pairs)


@dataclass
class RunningServer:
    base_url: str
    runtime: Runtime
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def running_server(
    root: Path,
    *,
    services: list | None = None,
    blueprints: list | None = None,
    configure_app: Callable | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningServer]:
    """The real server on a free loopback port, stopped in an orderly way on exit."""
    loaded = loaded_config(root, **overrides)
    holder: dict[str, Runtime] = {}
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(
            serve, loaded, services=services, blueprints=blueprints, configure_app=configure_app,
            runtime_ready=lambda runtime: holder.setdefault("runtime", runtime),
        ))
        base_url = binds[0]
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            try:
                yield RunningServer(base_url=base_url, runtime=holder["runtime"], client=client)
            finally:
                holder["runtime"].request_stop()


@contextlib.asynccontextmanager
async def knowledge_server(root: Path, **overrides: Any) -> AsyncIterator[RunningServer]:
    """The full server (every service of ``everos server start``) on loopback."""
    from everos.knowledge._service import KnowledgeService
    from everos.services import build_services

    services, blueprints = build_services(loaded_config(root, **overrides))
    async with running_server(root, services=services, blueprints=blueprints, **overrides) as server:
        server.service = next(s for s in services if isinstance(s, KnowledgeService))
        yield server
