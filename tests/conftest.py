"""Shared fixtures: a root with a config, and the real server started in-process on loopback."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from everos.config import Config, LoadedConfig, load_config, render_template
from everos.runtime import OpenServices, Runtime
from everos.server import serve


def hashing_template() -> str:
    """The default ``everos.toml`` with the hashing embedder: tests prove behaviour, and it is
    instant and exact (the e5 default is tested in tests/providers/test_e5_embedder.py and through
    the labelled set in tests/search/test_labelled.py)."""
    defaults = Config()
    return render_template(dataclasses.replace(
        defaults, embedding=dataclasses.replace(defaults.embedding, model="hashing")))


def write_config(root: Path, text: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "everos.toml"
    path.write_text(hashing_template() if text is None else text, encoding="utf-8")
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
    services: Any = None  # what the opener yielded (everos.services.Services for the full server)


@dataclass
class GivenServices:
    """A ServiceSet of services a test built itself (test doubles, or ingest alone)."""

    services: Sequence[Any] = ()
    blueprints: Sequence[Any] = ()
    ingest: Any = None
    mcp: Any = None


def ingest_services(make_extractor: Callable[[Runtime], Any] | None = None, *, mcp: bool = False,
                    search: Any = None) -> OpenServices:
    """An opener of the ingest service alone (no cascade, no index) with its routes; with ``mcp``
    also the MCP adapter over it (HTTP mount, ``search`` for knowledge_search)."""
    from everos.ingest import IngestService
    from everos.mcp import MCPService
    from everos.web._knowledge import knowledge_blueprints

    @contextlib.asynccontextmanager
    async def opener(runtime: Runtime) -> AsyncIterator[GivenServices]:
        extractor = make_extractor(runtime) if make_extractor else None
        ingest = await IngestService.open(runtime, extractor=extractor)
        runtime.board.blocks["ingest"] = ingest.status_block
        try:
            adapter = MCPService(ingest, runtime, search=search) if mcp else None
            yield GivenServices(services=[s for s in (ingest, adapter) if s is not None],
                                blueprints=knowledge_blueprints(ingest), ingest=ingest, mcp=adapter)
        finally:
            await ingest.aclose()

    return opener


@contextlib.asynccontextmanager
async def running_server(
    root: Path,
    *,
    services: OpenServices | Sequence[Any] | None = None,
    configure_app: Callable | None = None,
    **overrides: Any,
) -> AsyncIterator[RunningServer]:
    """The real server on a free loopback port, stopped in an orderly way on exit. ``services`` is
    an opener, or a list of services that need no opening (test doubles)."""
    loaded = loaded_config(root, **overrides)
    holder: dict[str, Any] = {}
    opener = services if services is None or callable(services) else _given(list(services))

    @contextlib.asynccontextmanager
    async def recording(runtime: Runtime) -> AsyncIterator[Any]:
        async with opener(runtime) as opened:
            holder["services"] = opened
            yield opened

    async with trio.open_nursery() as nursery:
        binds = await nursery.start(functools.partial(
            serve, loaded, services=None if opener is None else recording, configure_app=configure_app,
            runtime_ready=lambda runtime: holder.setdefault("runtime", runtime),
        ))
        base_url = binds[0]
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            try:
                yield RunningServer(base_url=base_url, runtime=holder["runtime"], client=client,
                                    services=holder.get("services"))
            finally:
                holder["runtime"].request_stop()


def _given(services: list[Any]) -> OpenServices:
    @contextlib.asynccontextmanager
    async def opener(runtime: Runtime) -> AsyncIterator[GivenServices]:
        yield GivenServices(services=services)

    return opener


@contextlib.asynccontextmanager
async def knowledge_server(root: Path, **overrides: Any) -> AsyncIterator[RunningServer]:
    """The full server (every service of ``everos server start``) on loopback."""
    from everos.services import open_services

    async with running_server(root, services=open_services, **overrides) as server:
        server.service = server.services.ingest
        yield server


class HeldIndex:
    """Every index attempt waits for :attr:`released`: the index workers lease rows and hold them,
    and the documents behind them wait in the queue (the ``held_index`` fixture)."""

    def __init__(self) -> None:
        self.released = trio.Event()


@pytest.fixture
def held_index(monkeypatch: pytest.MonkeyPatch) -> HeldIndex:
    from everos.cascade._indexer import DocumentIndexer

    held = HeldIndex()
    index = DocumentIndexer.index

    async def held_back(self, doc_dir, written=None, **options):
        await held.released.wait()
        return await index(self, doc_dir, written, **options)

    monkeypatch.setattr(DocumentIndexer, "index", held_back)
    return held


@contextlib.asynccontextmanager
async def lagging_server(root: Path, held: HeldIndex, **overrides: Any) -> AsyncIterator[RunningServer]:
    """The full server with ``[cascade] lag_documents = 1`` and two uploads waiting for their index
    (``held``): /health says the index lags. ``held`` is released on exit, so the server stops."""
    async with knowledge_server(root, cascade__lag_documents=1, **overrides) as server:
        try:
            for number in range(2):
                response = await server.client.post(
                    "/api/v1/knowledge/documents", data={"title": f"Held {number}"},
                    files={"file": (f"held{number}.md", f"# Held {number}\n\nWaiting for the index.\n".encode())})
                assert response.status_code == 201 and "X-Everos-Index-Lag" not in response.headers
            with trio.fail_after(20):
                while not (await server.client.get("/health")).json()["cascade"]["lagging"]:
                    await trio.sleep(0.05)
            yield server
        finally:
            held.released.set()


# -- the labelled-set evaluation, beside the rest of the suite (tests/search/_background.py) -----------

LABELLED_TEST = ("tests/search/test_labelled.py::"
                 "test_hit_at_1_per_method_stays_above_its_floor_and_hybrid_never_loses_to_keyword")


def _xdist_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The labelled-set test runs last in one process (its evaluation started at collection, it
    waits least), first under pytest-xdist (one worker runs it while the others take the rest)."""
    first = _xdist_worker(config)
    items.sort(key=lambda item: (item.nodeid == LABELLED_TEST) != first)  # stable: the rest keep their order


def pytest_collection_finish(session: pytest.Session) -> None:
    from tests.search import _background
    from tests.search.test_labelled import SETTINGS

    if (not session.config.option.collectonly and not _xdist_worker(session.config)
            and any(item.nodeid == LABELLED_TEST for item in session.items)):
        _background.EVALUATION = _background.BackgroundEvaluation(SETTINGS)
        _background.EVALUATION.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.search import _background

    if _background.EVALUATION is not None:
        _background.EVALUATION.stop()
        _background.EVALUATION = None
