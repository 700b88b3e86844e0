"""api.openapi_document(): the routes the server serves, their parameters and bodies from the
request models, their answers' schemas and every status they can answer."""

from __future__ import annotations

import dataclasses
import re

import pytest
from jsonschema import Draft202012Validator
from quart import Quart

from everos import __version__, api
from everos.api import _openapi
from everos.api._answer_schemas import ANSWER_SCHEMAS
from everos.errors import EverosError
from everos.mcp import TOOL_NAMES
from everos.web._cascade import cascade_blueprints
from everos.web._knowledge import knowledge_blueprints

METHODS = {"get", "post", "put", "patch", "delete"}


def served_routes() -> set[tuple[str, str]]:
    """Every ``(path, method)`` of the knowledge and cascade blueprints, in OpenAPI's spelling."""
    app = Quart(__name__)
    for blueprint in knowledge_blueprints(object()) + cascade_blueprints(object()):
        app.register_blueprint(blueprint)
    return {(re.sub(r"<(\w+)>", r"{\1}", rule.rule), method.lower()) for rule in app.url_map.iter_rules()
            for method in rule.methods if method.lower() in METHODS and rule.rule.startswith("/api/")}


def test_the_document_lists_exactly_the_routes_the_server_serves() -> None:
    document = api.openapi_document()
    listed = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert listed == served_routes()
    assert document["openapi"] == "3.1.0" and document["info"]["version"] == __version__


def test_operation_ids_are_unique_and_every_operation_answers_something() -> None:
    operations = [op for ops in api.openapi_document()["paths"].values() for op in ops.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids)) == 2 * len(api.OPERATIONS)
    for operation in operations:
        assert operation["summary"] and "default" in operation["responses"] and len(operation["responses"]) > 1


def test_parameters_are_the_fields_of_the_path_and_query_models() -> None:
    paths = api.openapi_document()["paths"]
    listing = paths["/api/v1/knowledge/documents"]["get"]["parameters"]
    schema = api.ListDocuments.model_json_schema()["properties"]
    assert [(p["name"], p["in"], p["required"]) for p in listing] == [(name, "query", False) for name in schema]
    category = schema.pop("category_id")  # nullable in the model; text in a query string (below)
    assert [p["schema"] for p in listing if p["name"] != "category_id"] == list(schema.values())
    assert next(p["schema"] for p in listing if p["name"] == "category_id") == {
        **category["anyOf"][0], "description": category["description"], "title": category["title"]}
    delete = paths["/api/v2/knowledge/documents/{doc_id}"]["delete"]["parameters"]
    assert [(p["name"], p["in"], p["required"]) for p in delete] == [
        ("doc_id", "path", True), ("app_id", "query", False), ("project_id", "query", False)]
    assert delete[0]["schema"]["pattern"] == api.DocumentRef.model_json_schema()["properties"]["doc_id"]["pattern"]
    for path, operations in paths.items():
        for operation in operations.values():  # every {name} of the path is a path parameter
            named = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert named == set(re.findall(r"{(\w+)}", path)), path


def test_bodies_are_the_body_models_schemas() -> None:
    document = api.openapi_document()
    schemas, paths = document["components"]["schemas"], document["paths"]
    search = paths["/api/v1/knowledge/search"]["post"]["requestBody"]
    assert search["required"] is True
    assert search["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/SearchRequest"}
    assert schemas["SearchRequest"] == api.SearchRequest.model_json_schema()
    assert paths["/api/v1/cascade/fix"]["post"]["requestBody"]["required"] is False  # no body is {}
    upload = paths["/api/v1/knowledge/documents"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert list(upload["properties"]) == ["file", "title", "source_type", "category_id", "app_id", "project_id"]
    assert upload["required"] == ["file", "title"]
    for name, schema in schemas.items():
        Draft202012Validator.check_schema(schema)
    refs = re.findall(r'"\$ref": "#/components/schemas/(\w+)"', str(document).replace("'", '"'))
    assert refs and set(refs) <= set(schemas)


def test_the_operations_of_mcp_tools_name_real_tools() -> None:
    tools = [operation.tool for operation in api.OPERATIONS if operation.tool]
    assert len(tools) == len(set(tools)) and set(tools) <= set(TOOL_NAMES)


def test_every_answer_has_a_schema_and_every_error_status_the_error_envelope() -> None:
    """issue #15 item 5: success bodies are the envelope around a data schema; errors point to Error."""
    document = api.openapi_document()
    schemas = document["components"]["schemas"]
    statuses = {cls.status for cls in _error_classes(EverosError)}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "504" in responses, (path, method)  # the request layer's deadline, for every route
            for status, response in responses.items():
                if status == "204":
                    assert "content" not in response
                    continue
                schema = response["content"]["application/json"]["schema"]
                if status == "default" or int(status) >= 400:
                    assert status == "default" or int(status) in statuses, status
                    assert schema == {"$ref": "#/components/schemas/Error"} and response["description"]
                else:
                    assert schema["required"] == ["request_id", "data"]
                    assert schema["properties"]["data"]["$ref"].rsplit("/", 1)[1] in schemas
    assert schemas["Error"]["required"] == ["error"]


def test_each_operation_lists_the_errors_its_handler_can_raise() -> None:
    """issue #15 item 5: uploads 409/413/415/429, reads of one thing 404, bodies 413 and 422."""
    paths = api.openapi_document()["paths"]

    def listed(path: str, method: str) -> set[int]:
        return {int(s) for s in paths[f"/api/v1{path}"][method]["responses"] if s != "default"}

    for method in ("post", "put"):
        upload = "/knowledge/documents" if method == "post" else "/knowledge/documents/{doc_id}"
        assert {400, 409, 413, 415, 422, 429, 503, 504} <= listed(upload, method)
    assert {404, 422, 503} <= listed("/knowledge/documents/{doc_id}", "get")
    assert {404, 409, 429} <= listed("/knowledge/tasks/{task_id}/retry", "post")
    assert {413, 422, 503} <= listed("/knowledge/search", "post")  # 503: no search service
    assert 404 not in listed("/knowledge/documents/{doc_id}", "delete")  # a missing document is 204
    # 401/403: API keys, 429: their rates (issue #16 items 1 and 2); no body, so no 408
    assert listed("/cascade/status", "get") == {200, 401, 403, 429, 503, 504}
    assert 408 in listed("/knowledge/search", "post") and 408 in listed("/knowledge/documents", "post")
    assert paths["/api/v1/knowledge/documents"]["post"]["responses"]["429"]["headers"]["Retry-After"]
    assert "RATE_LIMITED" in paths["/api/v1/knowledge/documents"]["post"]["responses"]["429"]["description"]


def test_the_document_declares_the_bearer_api_key() -> None:
    """issue #16 item 1: a bearer security scheme, optional (a root with no key needs none)."""
    document = api.openapi_document()
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert document["security"] == [{"apiKey": []}, {}]


def _error_classes(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _error_classes(child))]


# -- the document refuses what the server refuses (issue #16 item 5: found by schemathesis) -------------


def body_validator(path: str, method: str, media: str = "application/json") -> Draft202012Validator:
    """A validator of the request body ``method path`` (v1) documents, its ``$ref``s resolved."""
    document = api.openapi_document()
    schema = document["paths"][f"/api/v1{path}"][method]["requestBody"]["content"][media]["schema"]
    return Draft202012Validator({**schema, "components": document["components"]})


def accepted(model: type[api.RequestModel], data: dict) -> bool:
    try:
        model.parse(data)
    except EverosError:
        return False
    return True


DOCUMENT_AND_SERVER_AGREE = [  # (path, method, model, bodies: the document and the model accept the same)
    ("/knowledge/documents/{doc_id}/reextract", "post", api.EmptyBody, [{}, {"x": 1}, {"": None}]),
    ("/knowledge/reextract", "post", api.EmptyBody, [{}, {"x": 1}]),
    ("/knowledge/tasks/{task_id}/retry", "post", api.EmptyBody, [{}, {"x": 1}]),
    ("/cascade/fix", "post", api.CascadeFix, [{}, {"apply": True}, {"apply": True, "x": 1}, {"ùí": {}}]),
    ("/knowledge/documents/{doc_id}", "patch", api.PatchDocument, [
        {}, {"d": []}, {"title": "Renamed", "app_id": "a", "project_id": "p"}, {"title": "!!"}, {"title": "\x1d"},
        {"title": "a\x00b"}, {"title": "数据分析"}, {"title": "_"}, {"category_id": "Science"},
        {"category_id": "a b"}, {"category_id": "../x"}, {"category_id": ".hidden"}, {"category_id": "数据"},
        {"category_id": "\x94ò"}, {"category_id": ""}, {"category_id": None}, {"category_id": "x" * 51}]),
    ("/knowledge/search", "post", api.SearchRequest, [
        {"query": "q", "top_k": 74.0}, {"query": "q", "top_k": 74.5}, {"query": "q", "top_k": 100.0},
        {"query": "q", "top_k": 101.0}, {"query": "q", "top_k": 7}]),
]


@pytest.mark.parametrize(("path", "method", "model", "bodies"), DOCUMENT_AND_SERVER_AGREE,
                         ids=[f"{method} {path}" for path, method, *_ in DOCUMENT_AND_SERVER_AGREE])
def test_a_body_the_document_allows_is_one_the_server_accepts(path, method, model, bodies) -> None:
    """Positive cases schemathesis generated and the server refused: extra fields of the bodies
    that take none or only theirs (the schemas lacked additionalProperties: false), titles
    without a word character or with NUL, category ids that are no path component (no pattern),
    and a whole top_k written 74.0 (JSON Schema's integer; the server refused it)."""
    validator = body_validator(path, method)
    for body in bodies:
        assert validator.is_valid(body) == accepted(model, body), body


def test_form_fields_and_query_parameters_are_never_null() -> None:
    """schemathesis sent a form's null category_id and source_type as the text "null" (stored as a
    source_type, refused as an unknown category): text cannot carry null, so a field left out is
    the model's None, and the document allows no null where the value is text."""
    document = api.openapi_document()
    for path, operations in document["paths"].items():
        for operation in operations.values():
            schemas = [p["schema"] for p in operation["parameters"]]
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            schemas += list(form["schema"]["properties"].values()) if form else []
            for schema in schemas:
                assert "null" not in str(schema.get("type")) and "anyOf" not in schema, (path, schema)
    upload = body_validator("/knowledge/documents", "post", "multipart/form-data")
    for fields, valid in (({"file": "x", "title": "T"}, True), ({"file": "x", "title": "T", "category_id": None}, False),
                          ({"file": "", "title": "T"}, False), ({"file": "x", "title": "!!"}, False),
                          ({"file": "x", "title": "T", "category_id": "a/b"}, False)):
        assert upload.is_valid(fields) is valid, fields
        assert accepted(api.UploadForm, {k: v for k, v in fields.items() if k != "file"}) or not valid


def test_the_cascade_fix_answer_has_its_own_schema_not_the_request_bodys() -> None:
    """schemathesis found POST /cascade/fix's 200 answer pointing at the request body's schema: both
    were components/schemas/CascadeFix, and the body's replaced the answer's. The answer is
    CascadeFixReport now, and a name taken twice stops the document from being built."""
    document = api.openapi_document()
    answer = document["paths"]["/api/v1/cascade/fix"]["post"]["responses"]["200"]["content"]["application/json"]
    assert answer["schema"]["properties"]["data"] == {"$ref": "#/components/schemas/CascadeFixReport"}
    validator = Draft202012Validator({**answer["schema"], "components": document["components"]})
    assert validator.is_valid({"request_id": "r", "data": {"rows": [], "requeued": 0}})
    assert not validator.is_valid({"request_id": "r", "data": {"apply": True}})
    colliding = api.Operation("post", "/x", "x", "x", {200: ("x", "SearchResult")}, (), body_model=api.SearchRequest)
    renamed = type("SearchResult", (api.SearchRequest,), {})
    with pytest.raises(ValueError, match="SearchResult names two schemas"):
        _openapi._operation(dataclasses.replace(colliding, body_model=renamed), "v1",
                            {"SearchResult": ANSWER_SCHEMAS["SearchResult"]})
