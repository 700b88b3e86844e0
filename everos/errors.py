"""The everos error hierarchy, mapped to the EverOS error envelope in one place.

Every error the server can answer with is an :class:`EverosError`. Each class carries the HTTP
``status`` and the EverOS ``code`` it is rendered as; ``web`` renders them, nothing else does::

    EverosError                      500 INTERNAL_ERROR
    ├── ConfigError                  500 CONFIGURATION_ERROR   (also stops startup)
    ├── BadRequest                   400 BAD_REQUEST
    │   └── PathTraversal            400 BAD_REQUEST
    ├── Unauthorized                 401 UNAUTHORIZED          (WWW-Authenticate: Bearer)
    ├── Forbidden                    403 FORBIDDEN             (the key's scope is too small)
    ├── NotFound                     404 NOT_FOUND
    ├── MethodNotAllowed             405 METHOD_NOT_ALLOWED
    ├── Conflict                     409 CONFLICT
    ├── PayloadTooLarge              413 PAYLOAD_TOO_LARGE
    ├── UnsupportedFormat            415 UNSUPPORTED_FORMAT
    ├── InvalidInput                 422 INVALID_INPUT
    ├── ExtractionEmpty              422 EXTRACTION_EMPTY
    ├── ConversionFailed             422 CONVERSION_FAILED     (encrypted, damaged, over a limit)
    ├── WorkerFailed                 422 WORKER_FAILED         (the work cost its worker process)
    │   ├── WorkerTimeout            422 WORKER_TIMEOUT
    │   ├── WorkerOutOfMemory        422 WORKER_OUT_OF_MEMORY
    │   └── WorkerCrashed            422 WORKER_CRASHED
    ├── QueueSaturated               429 QUEUE_SATURATED       (Retry-After)
    ├── ServiceUnavailable           503 SERVICE_UNAVAILABLE   (Retry-After)
    │   ├── ExternalServiceUnavailable 503 EXTERNAL_SERVICE_UNAVAILABLE
    │   └── StoreBusy                503 STORE_BUSY
    ├── RequestTimeout               504 REQUEST_TIMEOUT
    ├── RootLocked                   (CLI only: another process owns the root)
    └── CommandError                 (CLI only: a failure the user can fix; carries its exit code)

Messages are written for the person reading the response: they say what was wrong and what is
allowed, and never include a traceback or local values.

An error that outlives its request (a failed ingest job, stored as code + message in its queue row)
is rebuilt from its code by :func:`error_from_code`, so its HTTP status comes from this hierarchy too.
"""

from __future__ import annotations

import enum
from typing import ClassVar

__all__ = [
    "BadRequest",
    "CommandError",
    "ConfigError",
    "Conflict",
    "ConversionFailed",
    "EverosError",
    "ExitCode",
    "ExternalServiceUnavailable",
    "ExtractionEmpty",
    "Forbidden",
    "InvalidInput",
    "MethodNotAllowed",
    "NotFound",
    "PathTraversal",
    "PayloadTooLarge",
    "QueueSaturated",
    "RateLimited",
    "RequestBodyTimeout",
    "RequestTimeout",
    "RootLocked",
    "ServiceUnavailable",
    "StoreBusy",
    "Unauthorized",
    "UnsupportedFormat",
    "WorkerCrashed",
    "WorkerFailed",
    "WorkerOutOfMemory",
    "WorkerTimeout",
    "error_from_code",
]


class EverosError(Exception):
    """Root of every error everos raises on purpose.

    ``status`` and ``code`` are what the HTTP edge answers with. ``retry_after_s``, when set,
    becomes a ``Retry-After`` header.
    """

    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class ConfigError(EverosError):
    """A setting is missing, mistyped or out of range; startup stops with this message."""

    code = "CONFIGURATION_ERROR"


class BadRequest(EverosError):
    """The request is not one the server can read at all."""

    status = 400
    code = "BAD_REQUEST"


class PathTraversal(BadRequest):
    """A name would escape the memory root (``..``, absolute paths, NUL bytes)."""


class Unauthorized(EverosError):
    """The request carries no API key, or one the server does not know (keys exist on this root)."""

    status = 401
    code = "UNAUTHORIZED"


class Forbidden(EverosError):
    """The request's API key is valid but its scope does not allow this route or tool."""

    status = 403
    code = "FORBIDDEN"


class NotFound(EverosError):
    """The route, document, topic or task does not exist."""

    status = 404
    code = "NOT_FOUND"


class MethodNotAllowed(EverosError):
    """The route exists but not for this HTTP method."""

    status = 405
    code = "METHOD_NOT_ALLOWED"


class Conflict(EverosError):
    """The request conflicts with the current state (for example a reused idempotency key)."""

    status = 409
    code = "CONFLICT"


class PayloadTooLarge(EverosError):
    """The body is larger than the configured cap; the connection is closed after the answer."""

    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedFormat(EverosError):
    """The upload cannot be decoded as text by any available parser."""

    status = 415
    code = "UNSUPPORTED_FORMAT"


class InvalidInput(EverosError):
    """A field is missing or malformed; ``field`` names it."""

    status = 422
    code = "INVALID_INPUT"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ExtractionEmpty(EverosError):
    """The document produced no topics (for example it holds no text)."""

    status = 422
    code = "EXTRACTION_EMPTY"


class ConversionFailed(EverosError):
    """A document in a converted format (PDF, Office, EPUB) cannot be turned into markdown: it is
    password-protected, damaged, or over a converter limit (a zip bomb, too many pages)."""

    status = 422
    code = "CONVERSION_FAILED"


class WorkerFailed(EverosError):
    """CPU work in a worker process cost that process: it ran past its deadline, over its memory
    limit, or crashed. The pool replaces the worker. 422, not 5xx: the same input fails the same
    way, so the client should not retry it."""

    status = 422
    code = "WORKER_FAILED"


class WorkerTimeout(WorkerFailed):
    """The work did not finish within its deadline; its worker process was killed."""

    code = "WORKER_TIMEOUT"


class WorkerOutOfMemory(WorkerFailed):
    """The work needed more memory than its limit; its worker process was retired."""

    code = "WORKER_OUT_OF_MEMORY"


class WorkerCrashed(WorkerFailed):
    """The worker process died during the work (a native crash, a signal)."""

    code = "WORKER_CRASHED"


class QueueSaturated(EverosError):
    """A bounded queue is full; try again after ``retry_after_s`` (guarantee G9)."""

    status = 429
    code = "QUEUE_SATURATED"

    def __init__(self, message: str, *, retry_after_s: float = 5.0) -> None:
        super().__init__(message, retry_after_s=retry_after_s)


class RateLimited(QueueSaturated):
    """An API key sent more than its rate allows (requests per second, uploads in flight); try
    again after ``retry_after_s`` (issue #16 item 2)."""

    code = "RATE_LIMITED"


class RequestBodyTimeout(EverosError):
    """The request's body did not arrive in time: a client that trickles it (slowloris) is cut
    off rather than holding a connection (issue #16 item 3)."""

    status = 408
    code = "REQUEST_BODY_TIMEOUT"


class ServiceUnavailable(EverosError):
    """The server is starting, stopping or cannot take this work right now."""

    status = 503
    code = "SERVICE_UNAVAILABLE"


class ExternalServiceUnavailable(ServiceUnavailable):
    """An LLM, embedding or rerank endpoint failed, timed out or has its circuit open."""

    code = "EXTERNAL_SERVICE_UNAVAILABLE"


class StoreBusy(ServiceUnavailable):
    """A store call (SQLite, LanceDB, disk) did not finish within its deadline."""

    code = "STORE_BUSY"


class RequestTimeout(EverosError):
    """The request did not finish within its deadline (guarantee G1)."""

    status = 504
    code = "REQUEST_TIMEOUT"


class RootLocked(EverosError):
    """Another process owns this memory root (a running server, or a writing CLI command)."""

    code = "ROOT_LOCKED"


class ExitCode(enum.IntEnum):
    """The ``everos`` command's exit codes: one per kind of failure, so a script can tell them apart."""

    OK = 0
    CONFIG = 1          # a setting is invalid, or the root has no everos.toml
    USAGE = 2           # the command line itself (argparse's own code)
    ROOT_LOCKED = 3     # another process owns the root
    CANNOT_LISTEN = 4   # the server cannot bind its address (in use, not allowed, not local)
    NOT_FOUND = 5       # a path or an id the command was given does not exist
    UNREACHABLE = 6     # the server that owns the root (or --url) does not answer
    CHECK_FAILED = 7    # the command ran and found a problem (a replay breach, an unhealthy cascade)
    INTERNAL = 70       # a bug: the traceback is printed with --log-level debug
    INTERRUPTED = 130   # Ctrl-C


class CommandError(EverosError):
    """A command-line failure the user caused and can fix (a port in use, a path that is not a
    document, a server that cannot be reached). The CLI prints the message as one line and exits
    with ``exit_code``."""

    code = "COMMAND_FAILED"

    def __init__(self, message: str, *, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# The class each code is rebuilt as: the one that names the code itself (``BadRequest``, not
# ``PathTraversal``). CommandError is the CLI's own (it needs an exit code) and no job stores it.
_BY_CODE: dict[str, type[EverosError]] = {cls.code: cls for cls in (
    EverosError, ConfigError, BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, Conflict,
    PayloadTooLarge, UnsupportedFormat,
    InvalidInput, ExtractionEmpty, ConversionFailed, WorkerFailed, WorkerTimeout, WorkerOutOfMemory, WorkerCrashed,
    QueueSaturated, RateLimited, ServiceUnavailable, ExternalServiceUnavailable, StoreBusy,
    RequestBodyTimeout, RequestTimeout, RootLocked,
)}


def error_from_code(code: str | None, message: str) -> EverosError:
    """The error a stored ``code`` names, rebuilt with ``message``: the class of that code, so its
    ``status`` is the hierarchy's. Pure.

    A code no class names, or None (a failure that had no EverOS code), gives the generic
    :class:`EverosError` (500 ``INTERNAL_ERROR``) whose message is the stored text in full
    (``"CODE: message"``, or the message alone).
    """
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code](message)
    return EverosError(message if code is None else f"{code}: {message}")
