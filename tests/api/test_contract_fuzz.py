"""Contract fuzzing (issue #16 item 5): schemathesis drives a real everos over loopback with
requests generated from everos's own OpenAPI document, valid ones and invalid ones, and checks
every answer against that document.

The server is ``everos server start`` in a subprocess (``conftest.everos_server``: why not in
process), on a fresh root with the default settings, holding a few documents.

The schema is built from the same document object the server serves (``api.openapi_document()``;
schemathesis's fixture loader does not work on pytest 9, and the served bytes are checked against
it). Generation is deterministic (``derandomize``; no example database on disk), so CI sees the
same cases every run. Positive cases that name a document, topic or task name seeded ones half
the time, so the success answers of every operation are checked too, not only their 404s.
"""

from __future__ import annotations

import collections

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import positive_data_acceptance

from everos import api

from .conftest import seed_case

pytestmark = pytest.mark.slow

# Examples per operation in the fuzzing phase, on top of the coverage phase's boundary cases
# (about 34 per operation): about 40 s for the 32 operations on two cores.
MAX_EXAMPLES = 10

CONFIG = SchemathesisConfig.from_dict({
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {"stateful": {"enabled": False}},
})
schema = schemathesis.openapi.from_dict(api.openapi_document(), config=CONFIG)

# Cases sent, by operation and generation mode ("positive", "negative").
SENT: collections.Counter[tuple[str, str]] = collections.Counter()
TURN = [0]


# What the document cannot say of a valid request, by operation kind: refusals that depend on
# the server's state or on the bytes of the file. Only these may answer a positive case with 4xx
# beyond schemathesis's defaults (401, 403, 404, 409, 429).
UPLOADS = {("POST", "/knowledge/documents"), ("PUT", "/knowledge/documents/{doc_id}")}


def state_refusal(case, response) -> bool:
    """True for an answer the schema cannot predict: a category the scope's taxonomy does not
    know (the taxonomy is a file of each scope, editable at any time; the document is built once),
    and for an upload, a file with no text in it (422 ``EXTRACTION_EMPTY``: known once its format
    is detected and its text decoded) or of a kind everos does not read (415)."""
    if response.status_code not in (415, 422):
        return False
    error = response.json()["error"]
    path = case.path.split("/api/v1", 1)[-1].split("/api/v2", 1)[-1]
    if error["code"] == "INVALID_INPUT" and error.get("field") == "category_id":
        return error["message"].startswith("unknown category_id")
    return (case.method.upper(), path) in UPLOADS and error["code"] in ("EXTRACTION_EMPTY", "UNSUPPORTED_FORMAT")


def positive_data_accepted(ctx, response, case):
    """schemathesis's ``positive_data_acceptance`` but for :func:`state_refusal`."""
    if state_refusal(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


@schema.parametrize()
def test_every_operation_answers_as_its_document_says(case, everos_server) -> None:
    """Every check schemathesis has (not_a_server_error, status_code, content_type, headers and
    response_schema conformance, positive data accepted, negative data rejected, ...) holds for
    every operation, for generated valid and invalid requests."""
    seed_case(case, everos_server, "own", TURN)
    SENT[case.operation.label, case.meta.generation.mode.value] += 1
    case.call_and_validate(base_url=everos_server.url, excluded_checks=[positive_data_acceptance],
                           additional_checks=[positive_data_accepted])


def test_every_operation_was_fuzzed_with_valid_and_invalid_requests() -> None:
    """Runs after the fuzzing above (skipped without it): each operation of the document got
    generated positive and negative cases."""
    if not SENT:
        pytest.skip("the fuzzing test did not run in this session")
    operations = {f"{method.upper()} {path}" for path, ops in api.openapi_document()["paths"].items() for method in ops}
    for mode in ("positive", "negative"):
        missing = sorted(op for op in operations if not SENT[op, mode])
        assert not missing, f"no {mode} case for {missing}"
    totals = collections.Counter(mode for (_, mode), count in SENT.items() for _ in range(count))
    print(f"\ncontract fuzz: {len(operations)} operations, {totals['positive']} positive and "
          f"{totals['negative']} negative cases")
