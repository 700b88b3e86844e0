"""``/openapi.json`` and ``/docs``: served by the path router from memory, the page's assets
served by everos itself (no CDN), and real answers that validate against their documented schemas."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import trio
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator

from everos import api
from everos.web import _docs

from ..conftest import knowledge_server

API = "/api/v1/knowledge"
GUIDE = b"# Solar power\n\nPanels turn light into power.\n\n## Wiring\n\nUse copper cables rated for the current.\n"


def test_the_document_is_valid_openapi_3_1() -> None:
    """issue #15 item 5: the document validates as OpenAPI 3.1 (openapi-spec-validator)."""
    validate(api.openapi_document(), cls=OpenAPIV31SpecValidator)


async def test_openapi_json_is_served_once_built_and_head_and_other_methods_behave(root: Path) -> None:
    """issue #15 item 5: GET /openapi.json answers the document, built once; HEAD works; POST 405."""
    async with knowledge_server(root) as server:
        response = await server.client.get("/openapi.json")
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() == api.openapi_document()
        assert _docs.openapi_bytes() is _docs.openapi_bytes()  # cached: the same bytes object
        head = await server.client.head("/openapi.json")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(response.content))
        for method in ("POST", "PUT", "DELETE"):
            refused = await server.client.request(method, "/openapi.json")
            assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
            assert refused.json()["error"]["code"] == "METHOD_NOT_ALLOWED" and refused.json()["request_id"]


async def test_docs_page_loads_only_local_assets_that_are_served(root: Path) -> None:
    """issue #15 item 5: /docs is Swagger UI on local assets only; each answers 200 with its type."""
    async with knowledge_server(root) as server:
        page = await server.client.get("/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert not re.search(r"https?://", page.text), "the page must fetch nothing from the network"
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert "/openapi.json" in page.text and "validatorUrl: null" in page.text
        kinds = {}
        for asset in assets:
            assert asset.startswith("/docs/static/"), asset
            response = await server.client.get(asset)
            assert response.status_code == 200 and response.content, asset
            kinds[asset.rsplit(".", 1)[-1]] = response.headers["content-type"]
        assert kinds["js"].startswith("text/javascript") and kinds["css"].startswith("text/css")
        bundle = await server.client.get("/docs/static/swagger-ui-bundle.js")
        assert b"SwaggerUIBundle" in bundle.content and len(bundle.content) > 100_000
        missing = await server.client.get("/docs/static/../../everos.toml")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"
        assert (await server.client.get("/docs/static/LICENSE")).status_code == 404  # an allow-list
        assert (await server.client.head("/docs")).status_code == 200
        assert (await server.client.post("/docs")).status_code == 405
        metrics = (await server.client.get("/metrics")).text  # counted under bounded route labels
        assert 'route="/docs/static",status="200"' in metrics and 'route="/docs/static",status="404"' in metrics
        assert "swagger-ui.css" not in metrics and 'route="/docs",status="200"' in metrics


def answer_schema(document: dict[str, Any], path: str, method: str, status: int) -> Draft202012Validator:
    """A validator of the documented JSON body of ``status`` from ``method path``, its ``$ref``s
    resolved against the document's components."""
    content = document["paths"][path][method]["responses"][str(status)]["content"]["application/json"]
    return Draft202012Validator({**content["schema"], "components": document["components"]})


def check(document: dict[str, Any], path: str, method: str, response: httpx.Response) -> dict[str, Any]:
    validator = answer_schema(document, f"/api/v1{path}", method, response.status_code)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(response.json())]
    assert not errors, errors
    return response.json()["data"]


async def test_real_answers_validate_against_their_documented_schemas(root: Path) -> None:
    """issue #15 item 5: upload, get/list documents, search and get task answers match the document."""
    async with knowledge_server(root) as server:
        client = server.client
        document = (await client.get("/openapi.json")).json()
        docs, task_path = "/knowledge/documents", "/knowledge/tasks/{task_id}"
        created = await client.post(f"{API}/documents", files={"file": ("guide.md", GUIDE)},
                                    data={"title": "Solar guide"})
        assert created.status_code == 201
        doc_id = check(document, docs, "post", created)["doc_id"]
        duplicate = await client.post(f"{API}/documents", files={"file": ("guide.md", GUIDE)},
                                      data={"title": "Solar guide"})
        assert duplicate.status_code == 200 and check(document, docs, "post", duplicate)["duplicate"] is True
        queued = await client.post(f"{API}/documents", files={"file": ("two.md", GUIDE + b"\nMore.\n")},
                                   data={"title": "Two"}, headers={"Prefer": "respond-async"})
        assert queued.status_code == 202
        task_id = check(document, docs, "post", queued)["task_id"]
        check(document, task_path, "get", await client.get(f"{API}/tasks/{task_id}"))
        check(document, "/knowledge/tasks", "get", await client.get(f"{API}/tasks"))
        check(document, docs, "get", await client.get(f"{API}/documents"))
        got = check(document, docs + "/{doc_id}", "get", await client.get(f"{API}/documents/{doc_id}"))
        topic = got["topics"][0]["topic_id"]
        check(document, "/knowledge/topics/{topic_id}", "get", await client.get(f"{API}/topics/{topic}"))
        with trio.fail_after(30):  # search finds it once indexed, which the 201 does not wait for
            while (await client.get(f"{API}/documents/{doc_id}")).json()["data"]["index_status"] != "indexed":
                await trio.sleep(0.05)
        hits = check(document, "/knowledge/search", "post",
                     await client.post(f"{API}/search", json={"query": "copper cables", "include_content": True}))
        assert hits["hits"]
        check(document, "/knowledge/categories", "get", await client.get(f"{API}/categories"))
        patched = await client.patch(f"{API}/documents/{doc_id}", json={"title": "Renamed"})
        check(document, docs + "/{doc_id}", "patch", patched)
        check(document, "/cascade/status", "get", await client.get("/api/v1/cascade/status"))
        check(document, "/cascade/fix", "post", await client.post("/api/v1/cascade/fix", json={"apply": True}))
        check(document, "/knowledge/reextract", "post", await client.post(f"{API}/reextract"))
        check(document, docs + "/{doc_id}", "delete", await client.delete(f"{API}/documents/{doc_id}"))
        missing = await client.get(f"{API}/documents/{doc_id}")
        assert missing.status_code == 404
        errors = list(answer_schema(document, f"/api/v1{docs}/{{doc_id}}", "get", 404).iter_errors(missing.json()))
        assert not errors, errors
