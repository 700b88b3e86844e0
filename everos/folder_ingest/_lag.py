"""Waiting out the server's index lag (``everos ingest``): once an upload's answer carries
``X-Everos-Index-Lag`` (more documents wait for their index than its ``[cascade] lag_documents``),
no further upload is sent until ``/health``'s cascade block no longer says ``lagging``, or for at
most ``max_wait_s``; the uploads already in flight finish. The server accepts uploads all the same:
waiting keeps the queue near the bound instead of piling thousands of documents into it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import trio

from everos.api._answers import INDEX_LAG_HEADER, parse_index_lag
from everos.client import ApiClient

__all__ = ["HEALTH_PATH", "LagGate", "describe_lag", "lag_of_health"]

HEALTH_PATH = "/health"
# The server refreshes its cascade block once a second; polling faster learns nothing.
POLL_INTERVAL_S = 1.0


def describe_lag(lag: Mapping[str, Any]) -> str:
    """``"412 documents wait for their index, more than 300"`` (what is known of it). Pure."""
    waiting = lag.get("documents")
    text = "documents wait for their index" if waiting is None else f"{waiting} documents wait for their index"
    return text if lag.get("bound") is None else f"{text}, more than {lag['bound']}"


def lag_of_health(body: Any) -> dict[str, Any] | None:
    """``{"documents", "bound"}`` while a ``/health`` body's cascade block says ``lagging``, else
    None (also for a body that is not one: a server that cannot say, says nothing). Pure."""
    cascade = body.get("cascade") if isinstance(body, dict) else None
    if not isinstance(cascade, dict) or cascade.get("lagging") is not True:
        return None
    return {"documents": cascade.get("waiting_documents"), "bound": cascade.get("lag_documents")}


class LagGate:
    """Holds the uploads of one run while the server's index lags.

    Senders call :meth:`saw` with each upload answer's headers and ``await`` :meth:`ready` before
    each upload. ``max_wait_s`` bounds one pause (0: never wait, ``--no-lag-wait``); after it the
    uploads go on, and the next answer that says the index lags starts another pause.
    ``pauses`` and ``waited_s`` count what the run spent.
    """

    def __init__(self, client: ApiClient, *, max_wait_s: float, poll_interval_s: float | None = None) -> None:
        self._client = client
        self.max_wait_s = max_wait_s
        self.poll_interval_s = POLL_INTERVAL_S if poll_interval_s is None else poll_interval_s
        self.pauses = 0
        self.waited_s = 0.0
        self._lag: dict[str, Any] | None = None
        self._paused: trio.Event | None = None  # set when the pause in progress ends

    def saw(self, headers: Mapping[str, str]) -> None:
        """Note an upload's answer: with ``X-Everos-Index-Lag`` the next :meth:`ready` pauses.
        Not a checkpoint."""
        lag = parse_index_lag(headers.get(INDEX_LAG_HEADER))
        if lag is not None and self.max_wait_s > 0:
            self._lag = lag

    async def ready(self, note: Callable[[str], None]) -> None:
        """Return once the next upload may go: at once while no answer said the index lags;
        else after a pause, one for all senders (the first polls ``/health``, the rest wait for
        it), each told through ``note``. A checkpoint only when it pauses; cancelled, it stops
        waiting (and wakes the other senders).

        Raises:
            CommandError: the server cannot be reached (``UNREACHABLE``).
        """
        while self._lag is not None:
            if self._paused is not None:
                await self._paused.wait()
                continue
            self._paused = trio.Event()
            try:
                await self._pause(self._lag, note)
            finally:
                self._paused.set()
                self._paused = None

    async def _pause(self, lag: dict[str, Any], note: Callable[[str], None]) -> None:
        note(f"everos ingest: the server's index lags ({describe_lag(lag)}): waiting up to {self.max_wait_s:g} s "
             "before sending more (--no-lag-wait sends at once)")
        self.pauses += 1
        started = trio.current_time()
        with trio.move_on_after(self.max_wait_s) as deadline:
            while (now := await self._server_lag()) is not None:
                lag = now
                await trio.sleep(self.poll_interval_s)
        waited = trio.current_time() - started
        self.waited_s += waited
        if deadline.cancelled_caught:
            note(f"everos ingest: the index still lags after {waited:.0f} s ({describe_lag(lag)}); sending on")
        else:
            note(f"everos ingest: the index caught up after {waited:.0f} s; sending again")
        self._lag = None

    async def _server_lag(self) -> dict[str, Any] | None:
        response = await self._client.request("GET", HEALTH_PATH)
        try:
            body = response.json()
        except ValueError:
            return None
        return lag_of_health(body) if response.status_code == 200 else None
