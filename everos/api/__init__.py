"""The knowledge API's requests and answers, shared by every surface (HTTP routes, MCP tools).

One pydantic model per operation (``_requests.py``) is the request's schema, its validation and
its documentation; it refuses a field with EverOS's ``InvalidInput`` and one-line message, never
pydantic's (``_model.py``), from the field types and checks of ``_fields.py``. The answer bodies
both surfaces render are pure functions of stored rows (``_answers.py``). ``openapi_document()``
builds the OpenAPI document of the routes from the models (``_openapi.py``).
"""

from everos._exports import claim_public_names
from everos.api._answers import (
    INDEX_LAG_HEADER,
    created_body,
    display_time,
    document_body,
    document_list_item,
    index_lag_header,
    job_failure,
    parse_index_lag,
    task_body,
    topic_body,
    upload_body,
)
from everos.api._fields import (
    CATEGORY_MAX_CHARS,
    CATEGORY_PATTERN,
    JOB_STATUSES,
    MAX_QUERY_CHARS,
    PAGE_MAX,
    PAGE_SIZE_MAX,
    SCOPE_ID_MAX_CHARS,
    SEARCH_METHODS,
    SORT_ORDERS,
    TASK_ID_PATTERN,
    TITLE_MAX_CHARS,
    TITLE_PATTERN,
    TOP_K_MAX,
)
from everos.api._model import RequestModel, checked, refusal
from everos.api._openapi import OPERATIONS, Operation, openapi_document
from everos.api._requests import (
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

__all__ = [
    "AddDocument",
    "CATEGORY_MAX_CHARS",
    "CATEGORY_PATTERN",
    "CascadeFix",
    "DocumentRef",
    "EmptyBody",
    "INDEX_LAG_HEADER",
    "JOB_STATUSES",
    "ListDocuments",
    "ListTasks",
    "MAX_QUERY_CHARS",
    "NoArguments",
    "OPERATIONS",
    "Operation",
    "PAGE_MAX",
    "PAGE_SIZE_MAX",
    "PatchDocument",
    "RequestModel",
    "SCOPE_ID_MAX_CHARS",
    "SEARCH_METHODS",
    "SORT_ORDERS",
    "Scope",
    "SearchRequest",
    "TASK_ID_PATTERN",
    "TITLE_MAX_CHARS",
    "TITLE_PATTERN",
    "TOP_K_MAX",
    "TaskRef",
    "TopicRef",
    "UploadForm",
    "checked",
    "created_body",
    "display_time",
    "document_body",
    "document_list_item",
    "index_lag_header",
    "job_failure",
    "openapi_document",
    "parse_index_lag",
    "refusal",
    "task_body",
    "topic_body",
    "upload_body",
]

claim_public_names(globals())
