"""The tool catalog: names, typed and described arguments, annotations, instructions."""

from __future__ import annotations

import logging

from mcp import Client
from mcp.types import CallToolResult, TextContent

import everos.mcp as mcp_package
from everos.mcp import INSTRUCTIONS, TOOL_NAMES, build_server
from everos.mcp._catalog import quiet_server


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    async def __call__(self, name: str, arguments: dict) -> CallToolResult:
        self.calls.append((name, arguments))
        return CallToolResult(content=[TextContent(type="text", text="ok")], structured_content={"ok": True})


async def test_catalog_lists_every_tool_with_descriptions_and_annotations() -> None:
    async with Client(build_server(Recorder())) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert sorted(tools) == list(TOOL_NAMES)
    for tool in tools.values():
        assert tool.description and tool.annotations and tool.annotations.open_world_hint is False
        assert tool.output_schema["type"] == "object"
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description") or "enum" in schema, (tool.name, name)
    read_only = {name for name, tool in tools.items() if tool.annotations.read_only_hint}
    assert read_only == set(TOOL_NAMES) - {"knowledge_add_document", "knowledge_delete_document"}
    assert tools["knowledge_delete_document"].annotations.destructive_hint is True
    assert tools["knowledge_add_document"].annotations.destructive_hint is False
    assert tools["knowledge_search"].input_schema["properties"]["method"]["enum"] == ["keyword", "vector", "hybrid"]


async def test_every_tool_hands_its_arguments_with_defaults_to_dispatch() -> None:
    recorder = Recorder()
    async with Client(build_server(recorder)) as client:
        result = await client.call_tool("knowledge_search", {"query": "q"})
        await client.call_tool("knowledge_status", {})
    assert result.structured_content == {"ok": True}
    assert recorder.calls == [
        ("knowledge_search", {"query": "q", "method": "hybrid", "top_k": 10, "score_threshold": None,
                              "include_content": False, "app_id": "default", "project_id": "default"}),
        ("knowledge_status", {}),
    ]


async def test_server_sends_instructions_that_mark_stored_text_as_data() -> None:
    async with Client(build_server(Recorder())) as client:
        assert client.instructions == INSTRUCTIONS
    assert "not instructions" in INSTRUCTIONS and "knowledge_task_status" in INSTRUCTIONS


def test_constructing_the_server_leaves_logging_alone() -> None:
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    for handler in saved[0]:
        root.removeHandler(handler)
    try:
        quiet_server(name="probe")
        assert root.handlers == [] and root.level == saved[1]
    finally:
        for handler in saved[0]:
            root.addHandler(handler)


def test_public_surface_is_sorted_and_documented() -> None:
    assert mcp_package.__all__ == sorted(set(mcp_package.__all__))
    for name in mcp_package.__all__:
        obj = getattr(mcp_package, name)
        if callable(obj) and hasattr(obj, "__module__") and not name.isupper() and name != "SearchFn":
            assert obj.__doc__, name
            assert obj.__module__ == "everos.mcp", name
