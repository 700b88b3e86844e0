"""The package's shape, measured from its own imports (issue #14): no import circle, no import from
a lower layer to a higher one, no module over 450 lines.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING`` alike, because
each is a dependency a reader has to follow. ``from everos.x import y`` is an import of the module
``everos.x.y`` when that is a module, else of ``everos.x``.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "everos"
MAX_LINES = 450

# Lowest first. A module may import its own layer and the layers below it, never above.
LAYERS: list[set[str]] = [
    # foundations: settings, errors, logging, the status board and its metrics, the root lock,
    # the supervisor, the worker processes for CPU work, the runtime every service is opened with,
    # and the allocator settings (memory given back, issue #17 item 5)
    {"everos", "everos._exports", "everos.errors", "everos.config", "everos.logs", "everos.metrics",
     "everos.status", "everos.rootlock", "everos.supervisor", "everos.workers", "everos.runtime",
     "everos.allocator"},
    # outside the process: the stores, the model providers, the HTTP client of a running server,
    # the root's API key file and the keys' rates and last use (issue #16 items 1 and 2)
    {"everos.store", "everos.providers", "everos.client", "everos.auth", "everos.key_limits"},
    # the pure knowledge core, search, and one request model per operation
    {"everos.knowledge", "everos.search", "everos.api"},
    # the services: ingest and the index cascade
    {"everos.ingest", "everos.cascade"},
    # the surfaces: HTTP routes and MCP tools
    {"everos.web", "everos.mcp"},
    # the wiring and the root nursery
    {"everos.services", "everos.server"},
    # entry points, command-line tools, and the test harness (fakes and replay)
    {"everos.cli", "everos.cascade_cli", "everos.mcp_cli", "everos.api_cli", "everos.ingest_cli",
     "everos.keys_cli", "everos.folder_ingest", "everos.doctor", "everos.testing", "everos.__main__"},
]


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in MODULES else target
                     for alias in node.names]
        else:
            continue
        for name in names:
            # the longest known module that the name starts with
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _unit(module: str) -> str:
    """``everos.x.y`` -> ``everos.x``: the unit a layer names."""
    return ".".join(module.split(".")[:2])


def _layer(module: str) -> int:
    unit = _unit(module)
    for index, units in enumerate(LAYERS):
        if unit in units:
            return index
    raise AssertionError(f"{unit} is in no layer of tests/test_layers.py: place it")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_no_import_goes_up_a_layer() -> None:
    upward = sorted(f"{module} -> {target}" for module, targets in GRAPH.items() for target in targets
                    if _layer(target) > _layer(module))
    assert upward == []


def test_no_import_circle_between_modules() -> None:
    assert _cycles(GRAPH) == []


def test_no_import_circle_between_packages() -> None:
    units: dict[str, set[str]] = collections.defaultdict(set)
    for module, targets in GRAPH.items():
        units[_unit(module)] |= {_unit(t) for t in targets if _unit(t) != _unit(module)}
    assert _cycles(units) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_450_lines(module: str) -> None:
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"
