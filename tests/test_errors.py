"""``error_from_code``: an error stored as code + message comes back as the class of its code.

A failed job keeps only the EverOS code and message of its error; the HTTP and MCP answers rebuild
it, so its status is the hierarchy's. The table names every code the package raises; the last
test fails when a new code is added to the package without a row here.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import everos
from everos import errors
from everos.errors import EverosError, error_from_code
from everos.store import JobError

# code -> (the class it is rebuilt as, its HTTP status)
REBUILT = {
    "INTERNAL_ERROR": (errors.EverosError, 500),
    "CONFIGURATION_ERROR": (errors.ConfigError, 500),
    "BAD_REQUEST": (errors.BadRequest, 400),
    "UNAUTHORIZED": (errors.Unauthorized, 401),  # issue #16 item 1
    "FORBIDDEN": (errors.Forbidden, 403),  # issue #16 item 1
    "NOT_FOUND": (errors.NotFound, 404),
    "METHOD_NOT_ALLOWED": (errors.MethodNotAllowed, 405),
    "CONFLICT": (errors.Conflict, 409),
    "PAYLOAD_TOO_LARGE": (errors.PayloadTooLarge, 413),
    "UNSUPPORTED_FORMAT": (errors.UnsupportedFormat, 415),
    "INVALID_INPUT": (errors.InvalidInput, 422),
    "EXTRACTION_EMPTY": (errors.ExtractionEmpty, 422),
    "CONVERSION_FAILED": (errors.ConversionFailed, 422),
    "WORKER_FAILED": (errors.WorkerFailed, 422),
    "WORKER_TIMEOUT": (errors.WorkerTimeout, 422),
    "WORKER_OUT_OF_MEMORY": (errors.WorkerOutOfMemory, 422),
    "WORKER_CRASHED": (errors.WorkerCrashed, 422),
    "QUEUE_SATURATED": (errors.QueueSaturated, 429),
    "RATE_LIMITED": (errors.RateLimited, 429),  # issue #16 item 2
    "REQUEST_BODY_TIMEOUT": (errors.RequestBodyTimeout, 408),  # issue #16 item 3
    "SERVICE_UNAVAILABLE": (errors.ServiceUnavailable, 503),
    "EXTERNAL_SERVICE_UNAVAILABLE": (errors.ExternalServiceUnavailable, 503),
    "STORE_BUSY": (errors.StoreBusy, 503),
    "REQUEST_TIMEOUT": (errors.RequestTimeout, 504),
    "ROOT_LOCKED": (errors.RootLocked, 500),
}
# The CLI's own code: a CommandError carries an exit code a stored error does not have, and no
# job stores one; it comes back as the generic error with the whole text.
NOT_REBUILT = {"COMMAND_FAILED"}


@pytest.mark.parametrize("code", sorted(REBUILT))
def test_a_code_is_rebuilt_as_its_class_with_its_status(code: str) -> None:
    cls, status = REBUILT[code]
    error = error_from_code(code, "what went wrong")
    assert type(error) is cls
    assert (error.code, error.status, error.message) == (code, status, "what went wrong")


@pytest.mark.parametrize(("code", "message", "text"), [
    (None, "lease of ingest-1:ab expired before the attempt ended",
     "lease of ingest-1:ab expired before the attempt ended"),
    ("COMMAND_FAILED", "cannot listen on 127.0.0.1:8000", "COMMAND_FAILED: cannot listen on 127.0.0.1:8000"),
    ("NO_SUCH_CODE", "from a newer everos", "NO_SUCH_CODE: from a newer everos"),
])
def test_no_code_or_an_unknown_one_gives_the_generic_error_with_the_whole_text(
    code: str | None, message: str, text: str
) -> None:
    error = error_from_code(code, message)
    assert type(error) is EverosError
    assert (error.code, error.status, error.message) == ("INTERNAL_ERROR", 500, text)


def _every_error_class() -> set[type[EverosError]]:
    for module in pkgutil.walk_packages(everos.__path__, "everos."):
        importlib.import_module(module.name)
    found: set[type[EverosError]] = set()
    pending = [EverosError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__.startswith("everos.")}


def test_the_table_names_every_code_the_package_raises() -> None:
    assert {cls.code for cls in _every_error_class()} == set(REBUILT) | NOT_REBUILT


STORABLE = sorted((cls for cls in _every_error_class() if cls.code not in NOT_REBUILT),
                  key=lambda cls: (cls.__module__, cls.__name__))


@pytest.mark.parametrize("cls", STORABLE, ids=lambda cls: cls.__name__)
def test_every_error_class_survives_being_stored(cls: type[EverosError]) -> None:
    """What a worker stores (``JobError.of``) rebuilds with the same code, status and message,
    whichever subclass was raised (``PathTraversal`` comes back as ``BadRequest``, a provider's
    error as ``ExternalServiceUnavailable``)."""
    # Subclasses take different arguments (a provider error names its endpoint); the stored error
    # is only the code and the message, so set just the message.
    raised = cls.__new__(cls)
    EverosError.__init__(raised, "what went wrong")
    stored = JobError.of(raised)
    rebuilt = error_from_code(stored.code, stored.message)
    assert (rebuilt.code, type(rebuilt).status, rebuilt.message) == (cls.code, cls.status, "what went wrong")
