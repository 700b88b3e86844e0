"""Request validation shared by every surface (the HTTP routes and the MCP tools)."""

from __future__ import annotations

from typing import Any

from everos.errors import InvalidInput
from everos.knowledge._layout import safe_filename, sanitize_name
from everos.knowledge._models import validate_app_id, validate_project_id

__all__ = [
    "MAX_QUERY_CHARS",
    "SEARCH_METHODS",
    "parse_search_request",
    "text_field",
    "validate_category_name",
    "validate_filename",
    "validate_task_id",
    "validate_title",
]

SEARCH_METHODS = ("keyword", "vector", "hybrid")
MAX_QUERY_CHARS = 2000


def text_field(value: object, field: str) -> str:
    """``value`` if it is a string that UTF-8 can encode (JSON can carry a lone surrogate such as
    ``"\ud800"``, which no file, row or index can store); raises ``InvalidInput`` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text (it holds a lone surrogate)", field=field) from None
    return value


def parse_search_request(body: dict[str, Any], top_k_cap: int) -> dict[str, Any]:
    """Validate EverOS's search body; return the keyword arguments of ``search(...)``."""
    query = body.get("query")
    if not isinstance(query, str) or not text_field(query, "query").strip():
        raise InvalidInput("query is required", field="query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query must be at most {MAX_QUERY_CHARS} characters", field="query")
    method = body.get("method", "hybrid")
    if method not in SEARCH_METHODS:
        raise InvalidInput(f"method must be one of {', '.join(SEARCH_METHODS)}", field="method")
    top_k = body.get("top_k", 10)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= top_k_cap:
        raise InvalidInput(f"top_k must be a whole number from 1 to {top_k_cap}", field="top_k")
    threshold = body.get("score_threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise InvalidInput("score_threshold must be a number", field="score_threshold")
    include_content = body.get("include_content", False)
    if not isinstance(include_content, bool):
        raise InvalidInput("include_content must be true or false", field="include_content")
    return {
        "query": query.strip(), "method": method, "top_k": top_k,
        "score_threshold": None if threshold is None else float(threshold), "include_content": include_content,
        "app_id": validate_app_id(body.get("app_id", "default")),
        "project_id": validate_project_id(body.get("project_id", "default")),
    }


def validate_hex(text: str) -> bool:
    return 12 <= len(text) <= 32 and all(c in "0123456789abcdef" for c in text)


def validate_task_id(task_id: str) -> str:
    """A task id is ``t_`` and 12 to 32 lowercase hex characters; raises ``InvalidInput``."""
    if not task_id.startswith("t_") or not validate_hex(task_id[2:]):
        raise InvalidInput("task_id must look like t_<hex>", field="task_id")
    return task_id


def validate_title(title: object) -> str:
    """A title: a string with a word character, at most 500 characters, storable (no NUL, no lone
    surrogate); returned stripped. Raises ``InvalidInput`` naming ``title``."""
    if title is None or (isinstance(title, str) and not title.strip()):
        raise InvalidInput("title is required", field="title")
    title = text_field(title, "title")
    if not any(ch.isalnum() or ch == "_" for ch in title):
        raise InvalidInput("title must contain at least one word character", field="title")
    if len(title) > 500:
        raise InvalidInput("title must be at most 500 characters", field="title")
    if "\x00" in title:
        raise InvalidInput("title must not contain NUL", field="title")
    return title.strip()


def validate_filename(name: str | None) -> str:
    """The upload's file name, reduced to a safe basename (raises ``PathTraversal`` on NUL)."""
    return safe_filename(name or "upload.txt")


def validate_category_name(category_id: object) -> str | None:
    """A category id as given (None when absent or empty): a string that is one safe path
    component. Raises ``InvalidInput`` naming ``category_id``."""
    if category_id is None or category_id == "":
        return None
    category_id = text_field(category_id, "category_id")
    if sanitize_name(category_id, "") != category_id:
        raise InvalidInput("category_id may hold only letters, digits, _, - and .", field="category_id")
    return category_id

