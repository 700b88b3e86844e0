"""The tool catalog: names, typed and described arguments with their limits, answer schemas,
annotations, instructions, and EverOS errors for the arguments a schema refuses."""

from __future__ import annotations

import logging

import pytest
from mcp import Client
from mcp.types import CallToolResult

import everos.mcp as mcp_package
from everos import api
from everos.knowledge import DOC_ID_RE, SCOPE_ID_RE, TOPIC_ID_RE
from everos.mcp import INSTRUCTIONS, TOOL_NAMES, build_server
from everos.mcp._catalog import quiet_server
from everos.mcp._render import error_result, ok_result

from .conftest import schema_problems, tool_schemas


class Recorder:
    """A dispatch that records its calls and answers with ``answer`` (a tool error by default: it
    reaches the client whatever the output schema says)."""

    def __init__(self, answer: CallToolResult | None = None) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.answer = answer or error_result("NOT_FOUND", "recorded")

    async def __call__(self, name: str, arguments: dict) -> CallToolResult:
        self.calls.append((name, arguments))
        return self.answer


async def test_catalog_lists_every_tool_with_descriptions_and_annotations() -> None:
    async with Client(build_server(Recorder())) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert sorted(tools) == list(TOOL_NAMES)
    for tool in tools.values():
        assert tool.description and tool.annotations and tool.annotations.open_world_hint is False
        assert tool.output_schema["type"] == "object" and tool.output_schema["required"], tool.name
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
    assert result.structured_content == {"error": {"code": "NOT_FOUND", "message": "recorded"}}
    assert recorder.calls == [
        ("knowledge_search", {"query": "q", "method": "hybrid", "top_k": 10, "score_threshold": None,
                              "include_content": False, "app_id": "default", "project_id": "default"}),
        ("knowledge_status", {}),
    ]


async def test_input_schemas_carry_the_documented_limits() -> None:
    async with Client(build_server(Recorder())) as client:
        schemas = {name: schema["properties"] for name, (schema, _) in (await tool_schemas(client)).items()}
    search, listing, add = schemas["knowledge_search"], schemas["knowledge_list_documents"], \
        schemas["knowledge_add_document"]
    assert (search["top_k"]["minimum"], search["top_k"]["maximum"]) == (1, 100)
    assert (search["query"]["minLength"], search["query"]["maxLength"]) == (1, 2000)
    assert (listing["page_size"]["minimum"], listing["page_size"]["maximum"]) == (1, 100)
    assert listing["page"]["minimum"] == 1 and listing["sort_by"]["enum"] == ["created_at", "updated_at", "title"]
    assert add["title"]["maxLength"] == 500 and add["app_id"]["maxLength"] == 255
    assert add["app_id"]["pattern"] == SCOPE_ID_RE.pattern
    assert schemas["knowledge_get_document"]["doc_id"]["pattern"] == DOC_ID_RE.pattern
    assert schemas["knowledge_get_topic"]["topic_id"]["pattern"] == TOPIC_ID_RE.pattern
    assert schemas["knowledge_task_status"]["task_id"]["pattern"] == r"^t_[a-f0-9]{12,32}$"


TOOL_MODELS = {"knowledge_add_document": api.AddDocument, "knowledge_delete_document": api.DocumentRef,
               "knowledge_get_document": api.DocumentRef, "knowledge_get_topic": api.TopicRef,
               "knowledge_list_documents": api.ListDocuments, "knowledge_search": api.SearchRequest,
               "knowledge_status": api.NoArguments, "knowledge_task_status": api.TaskRef}


async def test_each_input_schema_is_its_request_models_schema() -> None:
    """The tools take the fields of the request models the HTTP routes validate with: same
    names, order, types, limits, defaults and descriptions."""
    async with Client(build_server(Recorder())) as client:
        schemas = await tool_schemas(client)
    assert sorted(TOOL_MODELS) == list(TOOL_NAMES)
    for name, model in TOOL_MODELS.items():
        published, expected = schemas[name][0], model.model_json_schema()
        assert list(published.get("properties", {}).items()) == list(expected.get("properties", {}).items()), name
        assert published.get("required", []) == expected.get("required", []), name


SEARCH_ARGUMENTS = "query, method, top_k, score_threshold, include_content, app_id, project_id"
REFUSED = [  # (tool, arguments, the argument named, the message)
    ("knowledge_add_document", {"content": "x"}, "title", "title: required"),
    ("knowledge_add_document", {"title": 3}, "title", "title: must be a string (got 3); content: required"),
    ("knowledge_add_document", {"title": "t" * 501, "content": "x"}, "title",
     "title: must be at most 500 characters (got 501)"),
    ("knowledge_search", {"query": "q", "top_k": 500}, "top_k", "top_k: must be at most 100 (got 500)"),
    ("knowledge_search", {"query": "q", "top_k": 0}, "top_k", "top_k: must be at least 1 (got 0)"),
    ("knowledge_search", {"query": "q", "top_k": "5"}, "top_k", "top_k: must be a whole number (got a string)"),
    ("knowledge_search", {"query": "q", "top_k": True}, "top_k", "top_k: must be a whole number (got true)"),
    ("knowledge_search", {"query": "q", "method": "fuzzy"}, "method",
     "method: must be one of keyword, vector, hybrid"),
    ("knowledge_search", {"query": "q", "include_content": "yes"}, "include_content",
     "include_content: must be true or false (got a string)"),
    ("knowledge_search", {"query": "q", "score_threshold": [1]}, "score_threshold",
     "score_threshold: must be a number (got an array)"),
    ("knowledge_search", {"query": ""}, "query", "query: must not be empty"),
    ("knowledge_search", {"query": "q", "topk": 5}, "topk",
     f"topk: not an argument of knowledge_search (it takes {SEARCH_ARGUMENTS})"),
    ("knowledge_list_documents", {"page_size": 101}, "page_size", "page_size: must be at most 100 (got 101)"),
    ("knowledge_list_documents", {"sort_order": "up"}, "sort_order", "sort_order: must be one of asc, desc"),
    ("knowledge_list_documents", {"app_id": "a/b"}, "app_id",
     "app_id: must match ^[a-zA-Z0-9_@+-][a-zA-Z0-9_.@+-]*$"),
    ("knowledge_list_documents", {"app_id": ".index"}, "app_id",
     "app_id: must match ^[a-zA-Z0-9_@+-][a-zA-Z0-9_.@+-]*$"),
    ("knowledge_get_document", {}, "doc_id", "doc_id: required"),
    ("knowledge_get_document", {"doc_id": "../etc/passwd"}, "doc_id", "doc_id: must match ^d_[a-f0-9]{12,32}$"),
    ("knowledge_status", {"verbose": True}, "verbose", "verbose: not an argument of knowledge_status (it takes none)"),
]


@pytest.mark.parametrize(("name", "arguments", "field", "message"), REFUSED)
async def test_arguments_the_schema_refuses_answer_invalid_input_naming_them(name, arguments, field, message) -> None:
    """G10: an argument the input schema refuses (missing, wrong type, not in the enum, out of
    range, too long, not an argument of the tool) answers like the implementation's refusals, an
    INVALID_INPUT tool error with one line naming it, not pydantic's text; dispatch is never called."""
    recorder = Recorder()
    async with Client(build_server(recorder)) as client:
        result = await client.call_tool(name, arguments)
    assert result.is_error
    assert result.structured_content == {"error": {"code": "INVALID_INPUT", "message": message, "field": field}}
    assert result.content[0].text == f"INVALID_INPUT: {message} (field: {field})"
    assert recorder.calls == []


async def test_a_tool_error_reaches_the_client_whatever_the_output_schema_says() -> None:
    """MCP clients validate only successful results against the output schema: an EverOS error
    body matches none of them, and the SDK's client hands it over instead of raising."""
    async with Client(build_server(Recorder(error_result("NOT_FOUND", "document d_0123456789ab not found")))) \
            as client:
        output_schema = (await tool_schemas(client))["knowledge_get_document"][1]
        result = await client.call_tool("knowledge_get_document", {"doc_id": "d_0123456789ab"})
    assert result.is_error and result.structured_content["error"]["code"] == "NOT_FOUND"
    assert schema_problems(output_schema, result.structured_content)


async def test_an_answer_its_output_schema_refuses_is_an_internal_error() -> None:
    """A successful answer that its own output schema refuses is a bug: an EverOS INTERNAL_ERROR,
    with the details in the server log, not the SDK's text."""
    async with Client(build_server(Recorder(ok_result({"ok": True}, "ok")))) as client:
        result = await client.call_tool("knowledge_status", {})
    assert result.is_error and result.structured_content == {"error": {
        "code": "INTERNAL_ERROR", "message": "knowledge_status failed unexpectedly; the server log has details"}}


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
