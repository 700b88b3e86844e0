"""Hypercorn's trio connection, released as soon as its client has closed it.

Hypercorn 0.18's trio worker holds a connection whose client sent end of stream until the
keep-alive timer it started after the last answer runs out: the read loop ends, but the
connection's task group still waits for that timer (its asyncio worker stops the timer when the
connection closes; the trio one does not). So every short-lived client left its socket in
CLOSE-WAIT, with its file descriptor, for ``keep_alive_timeout`` seconds: a burst of clients that
each open and close connections piles up descriptors toward the open-file limit.

:class:`PromptCloseTCPServer` stops the timer when the read loop has ended, and starts no new one
once nothing more can be read: an answer still in flight is sent, then the connection closes.
:func:`use_prompt_close` puts it where ``hypercorn.trio.serve`` takes its connection class from.

It also counts the connections open against the config's ``everos_connection_cap`` (a
``_limits.ConnectionCap``, issue #16 item 3): one beyond the cap is refused before any of it is read.
"""

from __future__ import annotations

import hypercorn.trio.run
from hypercorn.events import Event, Updated
from hypercorn.trio.tcp_server import TCPServer

__all__ = ["PromptCloseTCPServer", "use_prompt_close"]


class PromptCloseTCPServer(TCPServer):
    """A connection that waits for no keep-alive timer once its client can send nothing more."""

    _read_ended = False

    async def run(self) -> None:
        cap = getattr(self.config, "everos_connection_cap", None)
        if cap is None:
            return await super().run()
        if cap.open >= cap.limit:
            return await cap.refuse(self.stream)
        cap.open += 1
        try:
            await super().run()
        finally:
            cap.open -= 1

    async def _read_data(self) -> None:
        await super()._read_data()
        self._read_ended = True
        await self.idle_task.stop()

    async def protocol_send(self, event: Event) -> None:
        if isinstance(event, Updated) and event.idle and self._read_ended:
            return  # idle with no request able to arrive: let the connection end now
        await super().protocol_send(event)


def use_prompt_close() -> None:
    """Make ``hypercorn.trio.serve`` use :class:`PromptCloseTCPServer` (idempotent)."""
    current = hypercorn.trio.run.TCPServer
    if current is PromptCloseTCPServer:
        return
    if current is not TCPServer:  # a hypercorn that moved or replaced its connection class
        raise RuntimeError(f"hypercorn.trio.run.TCPServer is {current!r}, not hypercorn's TCPServer")
    hypercorn.trio.run.TCPServer = PromptCloseTCPServer
