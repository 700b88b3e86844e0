"""Target: the request models of the knowledge API (``everos/api/``), as the routes and the MCP
tools use them.

One input is a request's fields: a JSON body (``SearchRequest``, ``PatchDocument``,
``CascadeFix``, ``EmptyBody``, ``AddDocument`` with ``RequestModel.parse``), a query string
(``ListDocuments``, ``ListTasks``, ``Scope`` with ``from_query``), form fields (``UploadForm``)
or a path id (``DocumentRef``, ``TopicRef``, ``TaskRef``). The contract: a refusal is an
``InvalidInput`` naming a field (or ``PathTraversal`` for a file name with NUL), never pydantic's
error nor any other exception. Invariants: an accepted request validates again from its own
``model_dump()`` to itself (it is a fixed point), every string it holds can be stored (UTF-8), and
the search fields keep their documented ranges (a ``top_k`` given within the cap, a finite threshold).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from everos.api import (
    AddDocument,
    CascadeFix,
    DocumentRef,
    EmptyBody,
    ListDocuments,
    ListTasks,
    PatchDocument,
    Scope,
    SearchRequest,
    TaskRef,
    TopicRef,
    UploadForm,
)
from everos.api._model import RequestModel
from everos.errors import InvalidInput, PathTraversal
from everos.knowledge._models import split_topic_id

__all__ = ["BODY_MODELS", "QUERY_MODELS", "check_body", "check_path_id", "check_query", "check_request_bytes",
           "check_search"]

BODY_MODELS: tuple[type[RequestModel], ...] = (SearchRequest, PatchDocument, CascadeFix, EmptyBody, AddDocument,
                                               UploadForm)
QUERY_MODELS: tuple[type[RequestModel], ...] = (ListDocuments, ListTasks, Scope)


def _parsed(model: type[RequestModel], data: Mapping[str, Any], *, query: bool = False,
            **context: Any) -> RequestModel | None:
    """The model's request from ``data``, or None for a refusal of the documented kind."""
    try:
        return model.from_query(data, **context) if query else model.parse(data, **context)
    except PathTraversal:
        assert model is UploadForm, "only a file name can be a path traversal"
        return None
    except InvalidInput as exc:
        assert isinstance(exc.field, str) and exc.message, exc
        # One line, but for the client's own field names that an "unknown fields" message echoes.
        assert "\n" not in exc.message or exc.message.startswith("unknown fields: "), exc.message
        assert "pydantic" not in exc.message.lower() and "validation error" not in exc.message.lower(), exc.message
        return None


def _check_accepted(model: type[RequestModel], request: RequestModel, **context: Any) -> None:
    dumped = request.model_dump()
    for value in dumped.values():
        if isinstance(value, str):
            value.encode("utf-8")
    again = model.parse(dumped, **context)
    assert again == request, (request, again)


def check_search(body: Mapping[str, Any], *, top_k_cap: int = 100) -> None:
    """``POST /search``'s body, validated as the route does (``top_k_cap`` from the config)."""
    request = _parsed(SearchRequest, body, top_k_cap=top_k_cap)
    if request is None:
        return
    assert isinstance(request, SearchRequest)
    assert request.query == request.query.strip() and 0 < len(request.query) <= 2000
    # An absent top_k is EverOS's default, 10, even above a lower cap: the search service cuts it.
    assert 1 <= request.top_k <= top_k_cap or ("top_k" not in body and request.top_k == 10)
    assert request.method in ("keyword", "vector", "hybrid")
    assert request.score_threshold is None or (isinstance(request.score_threshold, float)
                                               and math.isfinite(request.score_threshold))
    _check_accepted(SearchRequest, request, top_k_cap=max(top_k_cap, request.top_k))


def check_body(model: type[RequestModel], body: Mapping[str, Any]) -> None:
    """One JSON body (or tool arguments, or form fields) for ``model``."""
    request = _parsed(model, body)
    if request is not None:
        _check_accepted(model, request)


def check_query(model: type[RequestModel], args: Mapping[str, str]) -> None:
    """One query string's first values for ``model``."""
    request = _parsed(model, args, query=True)
    if request is not None:
        _check_accepted(model, request)


def check_path_id(text: str) -> None:
    """One path segment as a document, topic and task id; a topic id that is accepted splits."""
    _parsed(DocumentRef, {"doc_id": text})
    _parsed(TaskRef, {"task_id": text})
    if _parsed(TopicRef, {"topic_id": text}) is not None:
        doc_id, index = split_topic_id(text)
        assert text.startswith(doc_id + "_") and index >= 0


def check_request_bytes(data: bytes) -> None:
    """Every model of this target on one fuzzer input: the bytes as a JSON body (when they are a
    JSON object, as the routes require), as a query string and as a path id."""
    head, body = (data[0], data[1:]) if data else (0, b"")
    text = body.decode("utf-8", "replace")
    try:
        decoded = json.loads(body)  # what Quart's get_json does
    except (ValueError, RecursionError):
        decoded = None
    if isinstance(decoded, dict):
        check_search(decoded, top_k_cap=1 + head % 100)
        check_body(BODY_MODELS[head % len(BODY_MODELS)], decoded)
    args = dict(reversed(parse_qsl(text, keep_blank_values=True)))  # the first value of each name wins
    check_query(QUERY_MODELS[head % len(QUERY_MODELS)], args)
    check_path_id(text)
