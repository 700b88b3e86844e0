"""POST /knowledge/search: EverOS's request body, validated before anything runs (G10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..conftest import knowledge_server

API = "/api/v1/knowledge/search"

BAD_BODIES = [
    ({}, "query"),
    ({"query": ""}, "query"),
    ({"query": "   "}, "query"),
    ({"query": 42}, "query"),
    ({"query": "x" * 2001}, "query"),
    ({"query": "solar", "method": "agentic"}, "method"),
    ({"query": "solar", "top_k": 0}, "top_k"),
    ({"query": "solar", "top_k": 101}, "top_k"),
    ({"query": "solar", "top_k": "5"}, "top_k"),
    ({"query": "solar", "top_k": True}, "top_k"),
    ({"query": "solar", "top_k": 2.5}, "top_k"),
    ({"query": "solar", "score_threshold": "high"}, "score_threshold"),
    ({"query": "solar", "include_content": "yes"}, "include_content"),
    ({"query": "solar", "app_id": "../etc"}, "app_id"),
    ({"query": "solar", "project_id": "a/b"}, "project_id"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[b[1] + str(i) for i, b in enumerate(BAD_BODIES)])
async def test_bad_search_body_is_422_naming_the_field(root: Path, body: dict, field: str) -> None:
    async with knowledge_server(root) as server:
        response = await server.client.post(API, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"] == {**response.json()["error"], "code": "INVALID_INPUT", "field": field}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b"null"])
async def test_malformed_search_json_is_422(root: Path, raw: bytes) -> None:
    async with knowledge_server(root) as server:
        response = await server.client.post(API, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422 and response.json()["error"]["code"] == "INVALID_INPUT"


async def test_oversized_search_body_is_413(root: Path) -> None:
    async with knowledge_server(root, knowledge__max_upload_bytes=1000) as server:
        response = await server.client.post(API, content=b'{"query": "' + b"x" * (3 << 20) + b'"}',
                                            headers={"content-type": "application/json"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


async def test_a_whole_top_k_written_as_a_float_is_that_number(root: Path) -> None:
    """issue #16 item 5 (schemathesis): JSON Schema's integer includes 74.0, and EverOS takes it;
    everos answered 422. A whole top_k in any spelling is the number; 2.5 stays 422 (above)."""
    async with knowledge_server(root) as server:
        response = await server.client.post(API, content=b'{"query": "solar", "top_k": 3.0}',
                                            headers={"content-type": "application/json"})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["hits"] == []
