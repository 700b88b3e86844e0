"""The fields the request models are built from: each one's JSON schema and its EverOS check.

A field type is ``Annotated[type, Field(limits, description), checked(check)]``. The type and
limits are what the JSON schema publishes, and all that the MCP SDK refuses before a tool runs.
The check runs first: it refuses a value with the one-line message the API answers (testing in
the order the routes always did: a blank query is "required" before it is too long) and returns
the value to keep (a query or title stripped, an empty category none). Of the checks that need
the server's state, the configured ``top_k_cap`` arrives as validation context
(``SearchRequest.parse(body, top_k_cap=...)``); a category the scope's taxonomy does not know is
the knowledge service's to refuse.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo

from everos.api._model import checked
from everos.errors import InvalidInput
from everos.knowledge._layout import safe_filename, sanitize_name
from everos.knowledge._models import (
    DOC_ID_RE,
    SCOPE_ID_RE,
    TOPIC_ID_RE,
    validate_app_id,
    validate_doc_id,
    validate_project_id,
    validate_topic_id,
)
from everos.knowledge._models import SORT_COLUMNS
from everos.store import JobStatus

__all__ = [
    "CATEGORY_MAX_CHARS",
    "CATEGORY_PATTERN",
    "JOB_STATUSES",
    "MAX_QUERY_CHARS",
    "PAGE_MAX",
    "PAGE_SIZE_MAX",
    "SCOPE_ID_MAX_CHARS",
    "SEARCH_METHODS",
    "SORT_ORDERS",
    "TASK_ID_PATTERN",
    "TITLE_MAX_CHARS",
    "TITLE_PATTERN",
    "TOP_K_MAX",
]

SEARCH_METHODS = ("keyword", "vector", "hybrid")
SORT_ORDERS = ("asc", "desc")
JOB_STATUSES = tuple(str(status) for status in JobStatus)
MAX_QUERY_CHARS = 2000
# EverOS's documented top_k range, and the most [knowledge_search] top_k_cap allows; the
# configured cap (validation context) may be lower.
TOP_K_MAX = 100
PAGE_MAX = 1_000_000
PAGE_SIZE_MAX = 100
TITLE_MAX_CHARS = 500
SCOPE_ID_MAX_CHARS = 255  # validate_scope_id's limit
CATEGORY_MAX_CHARS = 50  # a category is one sanitized path component (sanitize_name cuts at 50)
TASK_ID_PATTERN = r"^t_[a-f0-9]{12,32}$"
# The JSON schema patterns of check_title and check_category_name: what they accept, said in a
# regular expression. ``\w`` is Python's (any script's letters and digits, and ``_``), as in
# EverOS's own document (its title pattern is ``\w``); an ECMA-262 validator reads it as ASCII,
# so it refuses more, never less.
TITLE_PATTERN = r"^[^\w\x00]*\w[^\x00]*$"
CATEGORY_PATTERN = r"^([\w-][\w.-]*)?$"

# -- the checks: each refuses with the message the API answers -------------------------------------


def text_field(value: object, field: str) -> str:
    """``value`` if it is a string that UTF-8 can encode (JSON can carry a lone surrogate such as
    ``"\\ud800"``, which no file, row or index can store); raises ``InvalidInput`` naming ``field``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text (it holds a lone surrogate)", field=field) from None
    return value


def check_query(query: object) -> str:
    """A search query: text with a non-blank character, at most ``MAX_QUERY_CHARS``; stripped."""
    if not isinstance(query, str) or not text_field(query, "query").strip():
        raise InvalidInput("query is required", field="query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query must be at most {MAX_QUERY_CHARS} characters", field="query")
    return query.strip()


def integral(value: object) -> object:
    """``value``, or the int of a float with no fractional part: JSON has one number type, and
    JSON Schema's ``integer`` is any number that is whole (``5.0`` is ``5``; EverOS takes it too)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def check_top_k(top_k: object, info: ValidationInfo) -> int:
    """A whole number from 1 to the context's ``top_k_cap`` (``TOP_K_MAX`` without one)."""
    cap = (info.context or {}).get("top_k_cap", TOP_K_MAX)
    top_k = integral(top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= cap:
        raise InvalidInput(f"top_k must be a whole number from 1 to {cap}", field="top_k")
    return top_k


def check_score_threshold(threshold: object) -> float | None:
    """A finite number (an integer is kept as a float), or none. Python's JSON reads ``NaN``,
    ``Infinity`` and ``1e999``; none of them is a threshold."""
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise InvalidInput("score_threshold must be a number", field="score_threshold")
    try:
        value = float(threshold)
    except OverflowError:  # an integer too large for a float
        value = math.inf
    if not math.isfinite(value):
        raise InvalidInput("score_threshold must be a finite number", field="score_threshold")
    return value


def check_flag(value: object, info: ValidationInfo) -> bool:
    """``true`` or ``false``, not a number or a string."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{info.field_name} must be true or false", field=info.field_name)
    return value


def one_of(choices: Sequence[str], message: str | None = None) -> Callable[[object, ValidationInfo], str]:
    """A check that the value is one of ``choices`` (``<field> must be one of a, b, c``)."""

    def check(value: object, info: ValidationInfo) -> str:
        if value not in choices:
            raise InvalidInput(message or f"{info.field_name} must be one of {', '.join(choices)}",
                               field=info.field_name)
        return value  # type: ignore[return-value]  # one of the strings in choices

    return check


def whole_number(low: int, high: int) -> Callable[[object, ValidationInfo], int]:
    """A check that the value is a whole number from ``low`` to ``high``; from a query string
    (context ``query_string``) its text is read as one first."""

    def check(value: object, info: ValidationInfo) -> int:
        name = info.field_name
        if isinstance(value, str) and (info.context or {}).get("query_string"):
            try:
                value = int(value)
            except ValueError:
                raise InvalidInput(f"{name} must be a whole number", field=name) from None
        value = integral(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{name} must be a whole number", field=name)
        if not low <= value <= high:
            raise InvalidInput(f"{name} must be between {low} and {high}", field=name)
        return value

    return check


def check_job_status(status: object) -> str | None:
    """A task state to list (none: every state)."""
    if status is not None and status not in JOB_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(JOB_STATUSES)}", field="status")
    return status  # type: ignore[return-value]  # one of the strings, or None


def check_task_id(task_id: object) -> str:
    """A task id is ``t_`` and 12 to 32 lowercase hex characters."""
    if not isinstance(task_id, str) or not task_id.startswith("t_") or not _is_hex_id(task_id[2:]):
        raise InvalidInput("task_id must look like t_<hex>", field="task_id")
    return task_id


def _is_hex_id(text: str) -> bool:
    return 12 <= len(text) <= 32 and all(c in "0123456789abcdef" for c in text)


def check_title(title: object) -> str:
    """A title: a string with a word character, at most 500 characters, storable (no NUL, no lone
    surrogate); returned stripped."""
    if title is None or (isinstance(title, str) and not title.strip()):
        raise InvalidInput("title is required", field="title")
    title = text_field(title, "title")
    if not any(ch.isalnum() or ch == "_" for ch in title):
        raise InvalidInput("title must contain at least one word character", field="title")
    if len(title) > TITLE_MAX_CHARS:
        raise InvalidInput(f"title must be at most {TITLE_MAX_CHARS} characters", field="title")
    if "\x00" in title:
        raise InvalidInput("title must not contain NUL", field="title")
    return title.strip()


def check_new_title(title: object) -> str | None:
    """A ``PATCH``'s title: none (absent or null: unchanged), else a title."""
    return None if title is None else check_title(title)


def check_category_name(category_id: object) -> str | None:
    """A category id as given (None when absent or empty): a string that is one safe path
    component. Whether the scope's taxonomy knows it is the knowledge service's to check."""
    if category_id is None or category_id == "":
        return None
    category_id = text_field(category_id, "category_id")
    if sanitize_name(category_id, "") != category_id:
        raise InvalidInput("category_id may hold only letters, digits, _, - and .", field="category_id")
    return category_id


def check_filename(name: object) -> str:
    """The upload's file name, reduced to a safe basename (``upload.txt`` when none).

    Raises:
        PathTraversal: the name holds a NUL byte.
    """
    if name is None or name == "":
        return safe_filename("upload.txt")
    return safe_filename(text_field(name, "filename"))


def check_optional_text(value: object, info: ValidationInfo) -> str | None:
    """A string that UTF-8 can encode, or none (absent or empty)."""
    if value is None or value == "":
        return None
    return text_field(value, info.field_name)


def check_text(value: object, info: ValidationInfo) -> str:
    """Any string (an MCP document's content: its size and encoding are checked as it is stored)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{info.field_name} must be a string", field=info.field_name)
    return value


# -- the field types --------------------------------------------------------------------------------

AppId = Annotated[str, Field(description="Scope: the application id (letters, digits, _ . @ + -).",
                             pattern=SCOPE_ID_RE.pattern, max_length=SCOPE_ID_MAX_CHARS), checked(validate_app_id)]
ProjectId = Annotated[str, Field(description="Scope: the project id within the application.",
                                 pattern=SCOPE_ID_RE.pattern, max_length=SCOPE_ID_MAX_CHARS),
                      checked(validate_project_id)]
DocId = Annotated[str, Field(description="Document id: d_ followed by 12 to 32 hex digits.", pattern=DOC_ID_RE.pattern),
                  checked(validate_doc_id)]
TopicId = Annotated[str, Field(description="Topic id: <doc_id>_<n>, as listed by a document or a search hit.",
                               pattern=TOPIC_ID_RE.pattern), checked(validate_topic_id)]
TaskId = Annotated[str, Field(description="Task id: t_ followed by 12 to 32 hex digits, as answered by "
                                          "knowledge_add_document.", pattern=TASK_ID_PATTERN), checked(check_task_id)]
# A category: the models give each its description (what it selects there).
CategoryId = Annotated[Annotated[str, Field(max_length=CATEGORY_MAX_CHARS, pattern=CATEGORY_PATTERN)] | None,
                       checked(check_category_name)]
Title = Annotated[str, Field(description=f"The document's title (at most {TITLE_MAX_CHARS} characters, with a letter, "
                                         "digit or _).", min_length=1, max_length=TITLE_MAX_CHARS,
                             pattern=TITLE_PATTERN), checked(check_title)]

Query = Annotated[str, Field(description=f"A few keywords naming what to find (1 to {MAX_QUERY_CHARS} characters).",
                             min_length=1, max_length=MAX_QUERY_CHARS), checked(check_query)]
Method = Annotated[Literal[SEARCH_METHODS],  # type: ignore[valid-type]  # the tuple's strings
                   Field(description="keyword (BM25), vector (embeddings) or hybrid (both, fused)."),
                   checked(one_of(SEARCH_METHODS), with_info=True)]
# Integers and booleans are strict: a JSON integer (5 or 5.0) or boolean, not "5" or true for a number.
TopK = Annotated[int, Field(description=f"How many hits to answer, 1 to {TOP_K_MAX}.", strict=True, ge=1,
                            le=TOP_K_MAX), checked(check_top_k, with_info=True)]
ScoreThreshold = Annotated[Annotated[float, Field(strict=True)] | None,
                           Field(description="Drop hits scoring below this. Keyword, vector and hybrid scores run "
                                             "from 0 to 1; a reranker scores on its own scale."),
                           checked(check_score_threshold)]
Flag = Annotated[bool, Field(strict=True), checked(check_flag, with_info=True)]

Page = Annotated[int, Field(description="Page number, from 1.", strict=True, ge=1, le=PAGE_MAX),
                 checked(whole_number(1, PAGE_MAX), with_info=True)]
PageSize = Annotated[int, Field(strict=True, ge=1, le=PAGE_SIZE_MAX),
                     checked(whole_number(1, PAGE_SIZE_MAX), with_info=True)]
SortBy = Annotated[Literal[SORT_COLUMNS],  # type: ignore[valid-type]  # the tuple's strings
                   checked(one_of(SORT_COLUMNS), with_info=True)]
SortOrder = Annotated[Literal[SORT_ORDERS],  # type: ignore[valid-type]  # the tuple's strings
                      checked(one_of(SORT_ORDERS, "sort_order must be asc or desc"), with_info=True)]
JobStatusName = Annotated[Literal[JOB_STATUSES] | None,  # type: ignore[valid-type]  # the tuple's strings
                          checked(check_job_status)]
