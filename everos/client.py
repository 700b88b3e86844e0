"""The HTTP client of the commands that talk to a running server (``everos ingest``, ``search``,
``docs``, ``tasks``, ``cascade fix --apply``).

Which server: ``--url`` when given, else the one that owns the root, at the address it recorded
in the root's lock when it bound (:func:`everos.rootlock.read_lock_owner`). Every request has a
deadline; 429 and 503 are retried after their ``Retry-After`` (bounded, G9); an EverOS error
envelope becomes an :class:`ApiError` whose message is one line (``STATUS CODE: message``), and a
server that cannot be reached a :class:`~everos.errors.CommandError` with ``ExitCode.UNREACHABLE``.

API keys (issue #16 item 1): every request carries ``Authorization: Bearer $EVEROS_API_KEY`` when
that variable is set (or the ``api_key`` given); a 401/403 answer exits with ``ExitCode.CONFIG``
and says to set it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import trio

from everos.errors import CommandError, ExitCode
from everos.rootlock import reachable_url, read_lock_owner

__all__ = ["API_KEY_ENV", "ApiClient", "ApiError", "api_key_headers", "server_base_url"]

API_KEY_ENV = "EVEROS_API_KEY"

RETRY_STATUSES = frozenset({429, 503})
MAX_RETRY_AFTER_S = 60.0


def api_key_headers(api_key: str | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer <key>"}`` for ``api_key``, else ``$EVEROS_API_KEY``; ``{}``
    when neither is set."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


def server_base_url(root: Path, url: str | None) -> str:
    """The base URL (``http://host:port``) of the server to talk to: ``url``, else the root's owner.

    Raises:
        CommandError: no ``url`` and no server owns ``root``, or its owner serves no HTTP
            (``UNREACHABLE``).
    """
    if url:
        return url.rstrip("/")
    owner = read_lock_owner(root)
    if owner is None:
        raise CommandError(f"no everos server owns the root {root}; start one (everos server start --root {root}) "
                           "or pass --url", exit_code=ExitCode.UNREACHABLE)
    if not owner.urls:
        doing = f", {owner.purpose}" if owner.purpose else ""
        raise CommandError(f"the root {root} is owned by pid {owner.pid}{doing}, which serves no HTTP; stop it, "
                           "or pass --url of a running server", exit_code=ExitCode.UNREACHABLE)
    return reachable_url(owner.urls[0])


class ApiError(CommandError):
    """The server answered with an error envelope. ``status`` and ``api_code`` are its HTTP status
    and EverOS code; ``field`` the field it names, if any."""

    def __init__(self, status: int, api_code: str, message: str, field: str | None = None) -> None:
        exit_code = ExitCode.NOT_FOUND if status == 404 else ExitCode.USAGE if status in (400, 409, 413, 415, 422) \
            else ExitCode.CONFIG if status in (401, 403) else ExitCode.UNREACHABLE
        hint = f" (set {API_KEY_ENV} to a key of the right scope)" if status in (401, 403) else ""
        super().__init__(f"{status} {api_code}: {message}{hint}", exit_code=exit_code)
        self.status, self.api_code, self.field = status, api_code, field

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            error = response.json()["error"]
            return cls(response.status_code, str(error["code"]), str(error["message"]), error.get("field"))
        except (ValueError, KeyError, TypeError):
            return cls(response.status_code, "HTTP_ERROR", " ".join(response.text.split())[:200] or "no body")


class ApiClient:
    """An ``httpx.AsyncClient`` on ``base_url`` with the retry and error rules above. Use it as an
    async context manager."""

    def __init__(self, base_url: str, *, timeout_s: float = 60.0, max_retries: int = 5,
                 max_connections: int = 16, transport: httpx.AsyncBaseTransport | None = None,
                 api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, trust_env=False,
                                         limits=httpx.Limits(max_connections=max_connections), transport=transport,
                                         headers=api_key_headers(api_key))

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections. Bounded and shielded."""
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await self._client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The server's answer to ``method path``, after retrying 429/503 up to ``max_retries``
        times (sleeping their ``Retry-After``, else a jittered backoff). Any status is returned.

        Raises:
            CommandError: the server cannot be reached, or no answer within ``timeout_s`` per
                attempt (``UNREACHABLE``).
        """
        for attempt in range(self.max_retries + 1):
            try:
                with trio.fail_after(self.timeout_s):
                    response = await self._client.request(method, path, **kwargs)
            except (httpx.HTTPError, trio.TooSlowError) as exc:
                detail = f"{exc.__class__.__name__}: {exc}"[:300] if str(exc) else exc.__class__.__name__
                raise CommandError(f"cannot reach the everos server at {self.base_url}: {detail}",
                                   exit_code=ExitCode.UNREACHABLE) from None
            if response.status_code not in RETRY_STATUSES or attempt == self.max_retries:
                return response
            await trio.sleep(retry_delay(response, attempt))
        raise AssertionError("unreachable")

    async def data(self, method: str, path: str, **kwargs: Any) -> Any:
        """The ``data`` of a successful answer (None for 204).

        Raises:
            ApiError: the server answered with an error.
            CommandError: see :meth:`request`.
        """
        response = await self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()["data"]
        except (ValueError, KeyError, TypeError):
            raise ApiError(response.status_code, "HTTP_ERROR", "the answer is not an EverOS envelope") from None


def retry_delay(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before retrying ``response``: its ``Retry-After`` (seconds, at most
    ``MAX_RETRY_AFTER_S``), else 0.5 s doubling per attempt, with jitter. Pure but for the jitter."""
    header = response.headers.get("retry-after", "")
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(header)))
    except ValueError:
        return min(MAX_RETRY_AFTER_S, 0.5 * 2 ** attempt) * (0.5 + random.random() / 2)
