"""One request model per operation of the knowledge API, for the HTTP routes and the MCP tools.

A model is the request's schema (``model_json_schema()``), its validation (``parse``, or
``from_query`` for a query string) and its documentation (field descriptions and limits). Path
parameters are models of their own (:class:`DocumentRef`, :class:`TopicRef`, :class:`TaskRef`),
checked before the body is read (a malformed id is answered before a malformed body, as it always
was); an operation with a path and a body has both (``PATCH /documents/{doc_id}``:
:class:`DocumentRef` and :class:`PatchDocument`). The MCP tools take the same models' fields.
``OPERATIONS`` (``_openapi.py``) says which route uses which.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import ConfigDict, Field, model_validator

from everos.api._fields import (
    PAGE_SIZE_MAX,
    TITLE_MAX_CHARS,
    TITLE_PATTERN,
    AppId,
    CategoryId,
    DocId,
    Flag,
    JobStatusName,
    Method,
    Page,
    PageSize,
    ProjectId,
    Query,
    ScoreThreshold,
    SortBy,
    SortOrder,
    TaskId,
    Title,
    TopicId,
    TopK,
    check_filename,
    check_new_title,
    check_optional_text,
    check_text,
)
from everos.api._model import RequestModel, checked, refusal
from everos.errors import InvalidInput
from everos.knowledge._layout import safe_filename, sanitize_name

__all__ = [
    "AddDocument",
    "CascadeFix",
    "DocumentRef",
    "EmptyBody",
    "ListDocuments",
    "ListTasks",
    "NoArguments",
    "PatchDocument",
    "Scope",
    "SearchRequest",
    "TaskRef",
    "TopicRef",
    "UploadForm",
]


# A model that refuses fields it does not name says so in its schema (``additionalProperties:
# false``); its own validator refuses them first, with EverOS's message.
_CLOSED = ConfigDict(frozen=True, extra="forbid")


def _refuse_unknown(data: Any, allowed: frozenset[str], hint: str = "") -> Any:
    """``data`` if it holds no field outside ``allowed``; else the refusal naming them (sorted)."""
    unknown = sorted(set(data) - allowed) if isinstance(data, dict) else []
    if unknown:
        raise refusal(InvalidInput(f"unknown fields: {', '.join(unknown)}{hint}", field=unknown[0]))
    return data


# -- requests without arguments -----------------------------------------------------------------------


class NoArguments(RequestModel):
    """An operation that takes nothing (``knowledge_status``, ``GET /cascade/status``)."""


class EmptyBody(NoArguments):
    """The body of a ``POST`` that takes no fields (re-extraction, a task's retry): none, or ``{}``."""

    model_config = _CLOSED

    @model_validator(mode="before")
    @classmethod
    def _nothing(cls, data: Any) -> Any:
        if data:
            raise refusal(InvalidInput("this route takes no fields: send no body, or {}", field="body"))
        return data


# -- path parameters and scopes -----------------------------------------------------------------------


class DocumentRef(RequestModel):
    """One document: ``/documents/{doc_id}`` (read, replace, patch, delete, re-extract) and the
    ``knowledge_get_document`` and ``knowledge_delete_document`` tools."""

    doc_id: DocId


class TopicRef(RequestModel):
    """One topic: ``GET /topics/{topic_id}`` and the ``knowledge_get_topic`` tool."""

    topic_id: TopicId


class TaskRef(RequestModel):
    """One ingest task: ``GET /tasks/{task_id}``, ``POST /tasks/{task_id}/retry`` and the
    ``knowledge_task_status`` tool."""

    task_id: TaskId


class Scope(RequestModel):
    """A scope in the query string: ``GET /categories``, and ``DELETE /documents/{doc_id}`` (EverOS's
    takes one: it is checked, though a document id names one document across every scope)."""

    app_id: AppId = "default"
    project_id: ProjectId = "default"


# -- search and listings ------------------------------------------------------------------------------


class SearchRequest(RequestModel):
    """``POST /search`` and the ``knowledge_search`` tool: EverOS's search body. ``top_k`` is
    refused above the configured cap: ``SearchRequest.parse(body, top_k_cap=...)``. The model's
    fields are the keyword arguments of the search service's ``search(...)`` (``model_dump()``)."""

    query: Query
    method: Method = "hybrid"
    top_k: TopK = 10
    score_threshold: ScoreThreshold = None
    include_content: Annotated[Flag, Field(description="Also answer each topic's full content.")] = False
    app_id: AppId = "default"
    project_id: ProjectId = "default"


class ListDocuments(RequestModel):
    """``GET /documents`` (a query string: :meth:`from_query`) and the ``knowledge_list_documents``
    tool: a page of a scope's documents. The fields are the knowledge service's
    ``list_documents(...)`` arguments (``model_dump()``)."""

    refusal_order: ClassVar = ("app_id", "project_id", "page", "page_size", "sort_by", "sort_order", "category_id")

    app_id: AppId = "default"
    project_id: ProjectId = "default"
    category_id: Annotated[CategoryId, Field(description="Only documents of this category.")] = None
    page: Page = 1
    page_size: Annotated[PageSize, Field(description=f"Documents per page, 1 to {PAGE_SIZE_MAX}.")] = 20
    sort_by: SortBy = "created_at"
    sort_order: SortOrder = "desc"


class ListTasks(RequestModel):
    """``GET /tasks`` (a query string: :meth:`from_query`): a page of the ingest tasks, of one
    state or of all."""

    status: Annotated[JobStatusName, Field(description="Only the tasks in this state.")] = None
    page: Page = 1
    page_size: Annotated[PageSize, Field(description=f"Tasks per page, 1 to {PAGE_SIZE_MAX}.")] = 20


# -- writes -------------------------------------------------------------------------------------------


class UploadForm(RequestModel):
    """The form fields of ``POST /documents`` and ``PUT /documents/{doc_id}`` (multipart, in
    EverOS's order); the file itself (part ``file``) stays outside the model, read and
    size-checked by the route first, and its part's name is ``filename``. ``app_id`` and
    ``project_id`` come from the query string when the form has neither."""

    refusal_order: ClassVar = ("app_id", "project_id", "title", "filename", "source_type", "category_id")

    title: Title
    filename: Annotated[str, Field(description="The file part's name, stored as a safe base name in _original/."),
                        checked(check_filename)] = "upload.txt"
    source_type: Annotated[str | None, Field(description="What the source is (EverOS's source_type), kept on the "
                                                         "document; empty is none."),
                           checked(check_optional_text, with_info=True)] = None
    category_id: Annotated[CategoryId, Field(description="A category id of the scope's taxonomy (e.g. Technology); "
                                                         "omit it and the extractor classifies the text.")] = None
    app_id: AppId = "default"
    project_id: ProjectId = "default"


class PatchDocument(RequestModel):
    """The body of ``PATCH /documents/{doc_id}``: a new title, a new category, or both (a field
    absent or null stays as it is). ``app_id`` and ``project_id`` are accepted, as EverOS clients
    send them, and ignored: a document keeps its scope. Any other field is refused."""

    model_config = _CLOSED

    title: Annotated[Annotated[str, Field(min_length=1, max_length=TITLE_MAX_CHARS, pattern=TITLE_PATTERN)] | None,
                     Field(description=f"The new title (at most {TITLE_MAX_CHARS} characters); the document's "
                                       "directory is renamed after it."),
                     checked(check_new_title)] = None
    category_id: Annotated[CategoryId, Field(description="The category to move the document to.")] = None
    app_id: Annotated[Any, Field(description="Accepted and ignored.")] = None
    project_id: Annotated[Any, Field(description="Accepted and ignored.")] = None

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return _refuse_unknown(data, frozenset(cls.model_fields))


class AddDocument(RequestModel):
    """The ``knowledge_add_document`` tool: a text stored as a document, under a file name made
    from its title (:attr:`filename`). The content's size and encoding are checked as it is
    stored (``[knowledge] max_upload_bytes``, a ``PAYLOAD_TOO_LARGE`` first)."""

    refusal_order: ClassVar = ("title", "app_id", "project_id", "category_id", "content")

    title: Title
    content: Annotated[str, Field(description="The document's text, plain or markdown (UTF-8, at most [knowledge] "
                                              "max_upload_bytes once encoded: 50 MiB by default)."),
                       checked(check_text, with_info=True)]
    category_id: Annotated[CategoryId, Field(description="A category id of the scope's taxonomy (e.g. Technology); "
                                                         "omit it and the extractor classifies the text.")] = None
    app_id: AppId = "default"
    project_id: ProjectId = "default"

    @property
    def filename(self) -> str:
        """The name the text is stored under in ``_original/``: its title's, as markdown."""
        return safe_filename(sanitize_name(self.title, "document") + ".md")


# -- the cascade --------------------------------------------------------------------------------------


class CascadeFix(RequestModel):
    """The body of ``POST /cascade/fix`` (an empty body is ``{}``): without ``apply`` the answer
    lists the dead and failed index rows; with it, they are queued again. Any other field is
    refused."""

    model_config = _CLOSED

    apply: Annotated[Flag, Field(description="Queue the dead and failed index rows again.")] = False

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return _refuse_unknown(data, frozenset(cls.model_fields), "; allowed: apply")
