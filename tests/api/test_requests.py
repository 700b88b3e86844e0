"""Each operation's request model: every refusal's message and field (the ones the HTTP routes
and the MCP tools answer), the values it keeps, query strings and typed JSON alike."""

from __future__ import annotations

from typing import Any

import pytest

from everos import api
from everos.api import (
    AddDocument,
    CascadeFix,
    DocumentRef,
    EmptyBody,
    ListDocuments,
    ListTasks,
    NoArguments,
    PatchDocument,
    Scope,
    SearchRequest,
    TaskRef,
    TopicRef,
    UploadForm,
)
from everos.errors import EverosError, InvalidInput, PathTraversal

SCOPE_MESSAGE = "{} must be 1-255 characters of [a-zA-Z0-9_.@+-], not starting with '.'"
DOC_ID_MESSAGE = "doc_id must match ^d_[a-f0-9]{12,32}$"
CATEGORY_MESSAGE = "category_id may hold only letters, digits, _, - and ."
SURROGATE = "\ud800"

REFUSALS = [  # (model, data, message, field)
    (SearchRequest, {}, "query is required", "query"),
    (SearchRequest, {"query": ""}, "query is required", "query"),
    (SearchRequest, {"query": " \n "}, "query is required", "query"),
    (SearchRequest, {"query": 42}, "query is required", "query"),
    (SearchRequest, {"query": None}, "query is required", "query"),
    (SearchRequest, {"query": "a" + SURROGATE}, "query must be valid Unicode text (it holds a lone surrogate)",
     "query"),
    (SearchRequest, {"query": "q" * 2001}, "query must be at most 2000 characters", "query"),
    (SearchRequest, {"query": " " * 2001}, "query is required", "query"),  # blank before long
    (SearchRequest, {"query": "q", "method": "agentic"}, "method must be one of keyword, vector, hybrid", "method"),
    (SearchRequest, {"query": "q", "method": None}, "method must be one of keyword, vector, hybrid", "method"),
    (SearchRequest, {"query": "q", "top_k": 0}, "top_k must be a whole number from 1 to 100", "top_k"),
    (SearchRequest, {"query": "q", "top_k": 101}, "top_k must be a whole number from 1 to 100", "top_k"),
    (SearchRequest, {"query": "q", "top_k": "5"}, "top_k must be a whole number from 1 to 100", "top_k"),
    (SearchRequest, {"query": "q", "top_k": True}, "top_k must be a whole number from 1 to 100", "top_k"),
    (SearchRequest, {"query": "q", "top_k": 5.5}, "top_k must be a whole number from 1 to 100", "top_k"),
    (SearchRequest, {"query": "q", "top_k": 101.0}, "top_k must be a whole number from 1 to 100", "top_k"),
    (SearchRequest, {"query": "q", "score_threshold": "high"}, "score_threshold must be a number",
     "score_threshold"),
    (SearchRequest, {"query": "q", "score_threshold": True}, "score_threshold must be a number", "score_threshold"),
    (SearchRequest, {"query": "q", "include_content": "yes"}, "include_content must be true or false",
     "include_content"),
    (SearchRequest, {"query": "q", "include_content": 1}, "include_content must be true or false",
     "include_content"),
    (SearchRequest, {"query": "q", "app_id": "../etc"}, SCOPE_MESSAGE.format("app_id"), "app_id"),
    (SearchRequest, {"query": "q", "app_id": "a" * 256}, SCOPE_MESSAGE.format("app_id"), "app_id"),
    (SearchRequest, {"query": "q", "app_id": None}, SCOPE_MESSAGE.format("app_id"), "app_id"),
    (SearchRequest, {"query": "q", "app_id": "default_app"}, "app_id 'default_app' is reserved; use 'default'",
     "app_id"),
    (SearchRequest, {"query": "q", "project_id": "a/b"}, SCOPE_MESSAGE.format("project_id"), "project_id"),
    (SearchRequest, {"query": "q", "project_id": "default_project"},
     "project_id 'default_project' is reserved; use 'default'", "project_id"),
    (SearchRequest, {"query": "", "method": "x", "top_k": 0}, "query is required", "query"),
    (SearchRequest, {"query": "q", "top_k": 0, "app_id": ".."}, "top_k must be a whole number from 1 to 100",
     "top_k"),
    (ListDocuments, {"page": 0}, "page must be between 1 and 1000000", "page"),
    (ListDocuments, {"page": 1_000_001}, "page must be between 1 and 1000000", "page"),
    (ListDocuments, {"page": "2"}, "page must be a whole number", "page"),  # typed JSON: no text
    (ListDocuments, {"page": True}, "page must be a whole number", "page"),
    (ListDocuments, {"page_size": 101}, "page_size must be between 1 and 100", "page_size"),
    (ListDocuments, {"sort_by": "size"}, "sort_by must be one of created_at, updated_at, title", "sort_by"),
    (ListDocuments, {"sort_order": "up"}, "sort_order must be asc or desc", "sort_order"),
    (ListDocuments, {"app_id": ".hidden"}, SCOPE_MESSAGE.format("app_id"), "app_id"),
    (ListDocuments, {"category_id": "../x"}, CATEGORY_MESSAGE, "category_id"),
    (ListDocuments, {"category_id": "c" * 51}, CATEGORY_MESSAGE, "category_id"),
    (ListDocuments, {"category_id": 5}, "category_id must be a string", "category_id"),
    (ListDocuments, {"category_id": "Tech" + SURROGATE},
     "category_id must be valid Unicode text (it holds a lone surrogate)", "category_id"),
    # The order the routes checked in: scope, page, page_size, sort_by, sort_order, category.
    (ListDocuments, {"category_id": "../x", "page": 0}, "page must be between 1 and 1000000", "page"),
    (ListDocuments, {"sort_order": "x", "category_id": "../x"}, "sort_order must be asc or desc", "sort_order"),
    (ListDocuments, {"page": 0, "project_id": ".."}, SCOPE_MESSAGE.format("project_id"), "project_id"),
    (ListTasks, {"status": "weird"}, "status must be one of queued, running, succeeded, failed, dead", "status"),
    (ListTasks, {"status": ""}, "status must be one of queued, running, succeeded, failed, dead", "status"),
    (ListTasks, {"page_size": 0}, "page_size must be between 1 and 100", "page_size"),
    (ListTasks, {"status": "weird", "page": 0}, "status must be one of queued, running, succeeded, failed, dead",
     "status"),
    (DocumentRef, {"doc_id": "not-an-id"}, DOC_ID_MESSAGE, "doc_id"),
    (DocumentRef, {"doc_id": "d_0123456789AB"}, DOC_ID_MESSAGE, "doc_id"),
    (DocumentRef, {"doc_id": "d_0123456789ab\n"}, DOC_ID_MESSAGE, "doc_id"),
    (DocumentRef, {"doc_id": 5}, DOC_ID_MESSAGE, "doc_id"),
    (DocumentRef, {}, "doc_id is required", "doc_id"),
    (TopicRef, {"topic_id": "d_0123456789ab"}, "topic_id must match ^d_[a-f0-9]{12,32}_\\d+$", "topic_id"),
    (TaskRef, {"task_id": "nope"}, "task_id must look like t_<hex>", "task_id"),
    (TaskRef, {"task_id": "t_0123456789AB"}, "task_id must look like t_<hex>", "task_id"),
    (TaskRef, {"task_id": "t_" + "a" * 33}, "task_id must look like t_<hex>", "task_id"),
    (TaskRef, {"task_id": 5}, "task_id must look like t_<hex>", "task_id"),
    (Scope, {"app_id": "a/b", "project_id": ".."}, SCOPE_MESSAGE.format("app_id"), "app_id"),
    (Scope, {"project_id": "default_project"}, "project_id 'default_project' is reserved; use 'default'",
     "project_id"),
    (UploadForm, {}, "title is required", "title"),
    (UploadForm, {"title": None}, "title is required", "title"),
    (UploadForm, {"title": "   "}, "title is required", "title"),
    (UploadForm, {"title": "!!"}, "title must contain at least one word character", "title"),
    (UploadForm, {"title": "t" * 501}, "title must be at most 500 characters", "title"),
    (UploadForm, {"title": "a\x00b"}, "title must not contain NUL", "title"),
    (UploadForm, {"title": 5}, "title must be a string", "title"),
    (UploadForm, {"title": "t", "category_id": "../../x"}, CATEGORY_MESSAGE, "category_id"),
    (UploadForm, {"title": "t", "filename": 5}, "filename must be a string", "filename"),
    (UploadForm, {"title": "t", "source_type": 5}, "source_type must be a string", "source_type"),
    (UploadForm, {"title": "!!", "app_id": ".."}, SCOPE_MESSAGE.format("app_id"), "app_id"),  # scope first
    (UploadForm, {"title": "!!", "category_id": "../x"}, "title must contain at least one word character", "title"),
    (PatchDocument, {"evil": 1}, "unknown fields: evil", "evil"),
    (PatchDocument, {"zeta": 1, "alpha": 2, "title": "!!"}, "unknown fields: alpha, zeta", "alpha"),
    (PatchDocument, {"doc_id": "d_0123456789ab"}, "unknown fields: doc_id", "doc_id"),
    (PatchDocument, {"title": ""}, "title is required", "title"),
    (PatchDocument, {"title": "!!"}, "title must contain at least one word character", "title"),
    (PatchDocument, {"title": {}}, "title must be a string", "title"),
    (PatchDocument, {"title": True}, "title must be a string", "title"),
    (PatchDocument, {"title": "Solar " + SURROGATE}, "title must be valid Unicode text (it holds a lone surrogate)",
     "title"),
    (PatchDocument, {"category_id": ["x"]}, "category_id must be a string", "category_id"),
    (PatchDocument, {"title": "!!", "category_id": "../x"}, "title must contain at least one word character",
     "title"),
    (AddDocument, {"content": "x"}, "title is required", "title"),
    (AddDocument, {"title": "!!", "content": "x"}, "title must contain at least one word character", "title"),
    (AddDocument, {"title": "T"}, "content is required", "content"),
    (AddDocument, {"title": "T", "content": 42}, "content must be a string", "content"),
    (AddDocument, {"title": "T", "content": "x", "category_id": "../up"}, CATEGORY_MESSAGE, "category_id"),
    # The order the tool checked in: title, scope, category, then content.
    (AddDocument, {"title": "T", "content": "x", "category_id": "../up", "app_id": "default_app"},
     "app_id 'default_app' is reserved; use 'default'", "app_id"),
    (AddDocument, {"title": "!!", "content": 42, "app_id": ".."}, "title must contain at least one word character",
     "title"),
    (EmptyBody, {"x": 1}, "this route takes no fields: send no body, or {}", "body"),
    (CascadeFix, {"apply": "yes"}, "apply must be true or false", "apply"),
    (CascadeFix, {"apply": None}, "apply must be true or false", "apply"),
    (CascadeFix, {"x": 1, "b": 2, "apply": 3}, "unknown fields: b, x; allowed: apply", "b"),
    # Found by fuzz/ (requests target): an integer too large for a float raised OverflowError (a 500);
    # NaN and infinities, which Python's JSON reads, were kept as a threshold that drops every hit.
    (SearchRequest, {"query": "q", "score_threshold": 10**400}, "score_threshold must be a finite number",
     "score_threshold"),
    (SearchRequest, {"query": "q", "score_threshold": float("nan")}, "score_threshold must be a finite number",
     "score_threshold"),
    (SearchRequest, {"query": "q", "score_threshold": -float("inf")}, "score_threshold must be a finite number",
     "score_threshold"),
    # Found by fuzz/ (requests target): kept, it failed the job when its frontmatter was written.
    (UploadForm, {"title": "t", "source_type": "pdf" + SURROGATE},
     "source_type must be valid Unicode text (it holds a lone surrogate)", "source_type"),
    # Found by fuzz/ (requests target): GET /topics/<id> split it with int(), a ValueError (a 500).
    (TopicRef, {"topic_id": "d_0123456789ab_" + "1" * 5000}, "topic_id has a topic index of more than 9 digits",
     "topic_id"),
]


@pytest.mark.parametrize(("model", "data", "message", "field"), REFUSALS,
                         ids=[f"{m.__name__}-{i}" for i, (m, *_) in enumerate(REFUSALS)])
def test_each_refusal_answers_its_message_naming_its_field(model, data, message, field) -> None:
    with pytest.raises(InvalidInput) as caught:
        model.parse(data)
    assert (caught.value.message, caught.value.field) == (message, field)


def test_a_file_name_with_nul_is_a_path_traversal() -> None:
    with pytest.raises(PathTraversal):
        UploadForm.parse({"title": "t", "filename": "a\x00b.md"})


def test_top_k_is_refused_above_the_configured_cap() -> None:
    assert SearchRequest.parse({"query": "q", "top_k": 20}, top_k_cap=20).top_k == 20
    with pytest.raises(InvalidInput) as caught:
        SearchRequest.parse({"query": "q", "top_k": 21}, top_k_cap=20)
    assert (caught.value.message, caught.value.field) == ("top_k must be a whole number from 1 to 20", "top_k")


def test_search_keeps_the_arguments_of_the_search_service() -> None:
    request = SearchRequest.parse({"query": "  solar  ", "method": "keyword", "top_k": 5, "score_threshold": 1,
                                   "app_id": "team", "extra": "ignored"}, top_k_cap=100)
    assert request.model_dump() == {"query": "solar", "method": "keyword", "top_k": 5, "score_threshold": 1.0,
                                    "include_content": False, "app_id": "team", "project_id": "default"}
    assert isinstance(request.score_threshold, float)


def test_defaults_are_everos_defaults() -> None:
    assert ListDocuments.parse({}).model_dump() == {
        "app_id": "default", "project_id": "default", "category_id": None, "page": 1, "page_size": 20,
        "sort_by": "created_at", "sort_order": "desc"}
    assert ListTasks.parse({}).model_dump() == {"status": None, "page": 1, "page_size": 20}
    assert Scope.parse({}).model_dump() == {"app_id": "default", "project_id": "default"}
    assert CascadeFix.parse({}).apply is False and EmptyBody.parse({}) == EmptyBody()
    assert NoArguments.parse({"anything": 1}) == NoArguments()


def test_the_kept_values_are_normalized() -> None:
    upload = UploadForm.parse({"title": "  Solar guide ", "filename": "../../etc/passwd", "source_type": "",
                               "category_id": ""})
    assert (upload.title, upload.filename, upload.source_type, upload.category_id) == \
        ("Solar guide", "passwd", None, None)
    assert UploadForm.parse({"title": "t", "filename": None}).filename == "upload.txt"
    assert UploadForm.parse({"title": "t"}).filename == "upload.txt"
    patch = PatchDocument.parse({"title": None, "category_id": "Science", "app_id": 5, "project_id": "x"})
    assert (patch.title, patch.category_id) == (None, "Science")  # a null title stays as it is
    assert PatchDocument.parse({"title": " New "}).title == "New"


def test_an_added_text_is_stored_under_its_titles_name() -> None:
    assert AddDocument.parse({"title": " Trio / notes ", "content": "x"}).filename == "Trio__notes.md"
    assert AddDocument.parse({"title": "!!!a", "content": ""}).filename == "a.md"


# -- a query string (HTTP) and typed JSON (MCP) are one model ------------------------------------------

AGREEMENT = [  # (model, query string args, the same as typed JSON)
    (ListDocuments, {}, {}),
    (ListDocuments, {"page": "3", "page_size": "100", "sort_by": "title", "sort_order": "asc", "app_id": "team",
                     "category_id": "Science"},
     {"page": 3, "page_size": 100, "sort_by": "title", "sort_order": "asc", "app_id": "team",
      "category_id": "Science"}),
    (ListDocuments, {"page": "0"}, {"page": 0}),
    (ListDocuments, {"page": "1000001"}, {"page": 1_000_001}),
    (ListDocuments, {"page_size": "101"}, {"page_size": 101}),
    (ListDocuments, {"category_id": "../x", "page": "0"}, {"category_id": "../x", "page": 0}),
    (ListDocuments, {"sort_by": "evil"}, {"sort_by": "evil"}),
    (ListDocuments, {"app_id": ".."}, {"app_id": ".."}),
    (ListTasks, {"status": "dead", "page": "2", "page_size": "5"}, {"status": "dead", "page": 2, "page_size": 5}),
    (ListTasks, {"page_size": "0"}, {"page_size": 0}),
    (ListTasks, {"status": "weird"}, {"status": "weird"}),
    (Scope, {"app_id": "team"}, {"app_id": "team"}),
    (Scope, {"project_id": "default_project"}, {"project_id": "default_project"}),
]


def outcome(parse: Any, data: dict[str, Any]) -> Any:
    try:
        return parse(data)
    except EverosError as exc:
        return type(exc).__name__, exc.message, getattr(exc, "field", None)


@pytest.mark.parametrize(("model", "query", "typed"), AGREEMENT)
def test_query_strings_and_typed_json_agree(model, query, typed) -> None:
    assert outcome(model.from_query, query) == outcome(model.parse, typed)


@pytest.mark.parametrize("text", ["abc", "1.5", "", "2e3", "0x10"])
def test_a_query_string_that_is_no_whole_number_is_refused(text: str) -> None:
    for model in (ListDocuments, ListTasks):
        for name in ("page", "page_size"):
            assert outcome(model.from_query, {name: text}) == ("InvalidInput", f"{name} must be a whole number", name)


def test_a_query_string_reads_whole_numbers_as_python_does() -> None:
    listing = ListDocuments.from_query({"page": " 5", "page_size": "+7"})
    assert (listing.page, listing.page_size) == (5, 7)


# -- every refusal is EverOS's ---------------------------------------------------------------------

MODELS = [AddDocument, CascadeFix, DocumentRef, ListDocuments, ListTasks, PatchDocument, Scope, SearchRequest,
          TaskRef, TopicRef, UploadForm]
VALID = {AddDocument: {"title": "T", "content": "x"}, DocumentRef: {"doc_id": "d_0123456789ab"},
         SearchRequest: {"query": "q"}, TaskRef: {"task_id": "t_0123456789ab"}, TopicRef: {"topic_id": "d_0123456789ab_1"},
         UploadForm: {"title": "T"}}
JUNK = [None, 0, -1, 10**9, True, 1.5, "", " ", "x" * 3000, SURROGATE, "../x", [], {}, ["a"], {"a": 1}]


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
def test_any_value_of_any_field_is_kept_or_refused_by_everos_naming_the_field(model) -> None:
    for field in model.model_fields:
        for value in JUNK:
            try:
                model.parse({**VALID.get(model, {}), field: value})
            except InvalidInput as exc:
                assert exc.field == field and exc.message.startswith(f"{field} "), (field, value, exc.message)
                assert exc.message != f"{field} is invalid", (field, value)  # a check refused, not the fallback
                assert "Input should" not in exc.message and "\n" not in exc.message
            except PathTraversal:
                assert field == "filename"


def test_every_model_publishes_its_json_schema() -> None:
    for model in [*MODELS, EmptyBody, NoArguments]:
        schema = model.model_json_schema()
        assert schema["type"] == "object" and schema["description"], model.__name__
        for name, field in schema.get("properties", {}).items():
            assert field.get("description") or "enum" in field, (model.__name__, name)
    search = SearchRequest.model_json_schema()["properties"]
    assert (search["top_k"]["minimum"], search["top_k"]["maximum"]) == (1, api.TOP_K_MAX)
    assert search["query"]["maxLength"] == api.MAX_QUERY_CHARS
    assert ListTasks.model_json_schema()["properties"]["status"]["anyOf"][0]["enum"] == list(api.JOB_STATUSES)
    assert UploadForm.model_json_schema()["required"] == ["title"]
