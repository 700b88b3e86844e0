"""Progress of ``everos ingest`` (and ``everos cascade rebuild``) on stderr: a tqdm bar on a
terminal, plain lines otherwise.

tqdm rather than rich: tqdm is a dependency already (LanceDB needs it too) and draws one line on
any terminal; rich would add a package for a bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress"]

PLAIN_EVERY_S = 5.0


class Progress:
    """Progress of ``total`` steps (each a ``unit``: ``file``, ``document``) on ``stream``: a tqdm
    bar (rate, ETA) when ``stream`` is a terminal, else a plain line (no carriage return) every
    tenth of ``total`` or every ``every_s`` seconds, and one at the end."""

    def __init__(self, label: str, total: int, stream: TextIO, *, every_s: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic, unit: str = "file") -> None:
        self.label, self.total, self.stream, self.unit = label, total, stream, unit
        self.done = self.failed = 0
        self._clock, self._every_s = clock, every_s
        self._started = self._last_line = clock()
        self._every_n = max(1, -(-total // 10))  # a tenth, rounded up
        self._bar = None
        if stream.isatty():
            self._bar = tqdm(total=total, desc=label, unit=unit, file=stream, dynamic_ncols=True, leave=True)

    def advance(self, *, failed: bool = False) -> None:
        """One step done. Not a checkpoint."""
        self.done += 1
        self.failed += failed
        if self._bar is not None:
            self._bar.update(1)
            if failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)
        elif self.done % self._every_n == 0 or self.done == self.total \
                or self._clock() - self._last_line >= self._every_s:
            self._line()

    def note(self, message: str) -> None:
        """A line of its own on the stream (above the bar on a terminal). Not a checkpoint."""
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.done % self._every_n and self.done != self.total:
            self._line()

    def _line(self) -> None:
        now = self._clock()
        self._last_line = now
        elapsed = max(now - self._started, 1e-9)
        rate = self.done / elapsed
        eta = tqdm.format_interval((self.total - self.done) / rate) if rate else "?"
        percent = 100 * self.done // max(self.total, 1)
        print(f"everos {self.label}: {self.done}/{self.total} {self.unit}s ({percent}%), {rate:.1f} {self.unit}s/s, "
              f"ETA {eta}, {self.failed} failed", file=self.stream, flush=True)

    def advance_to(self, done: int, *, failed: int | None = None) -> None:
        """``done`` steps done in all, ``failed`` of them failed (counts read from elsewhere, so
        they may jump); no more done than before changes nothing. A plain line when the count
        passed a tenth of ``total``, reached it, or ``every_s`` went by. Not a checkpoint."""
        before, self.done = self.done, max(self.done, min(done, self.total))
        if self.done == before:
            return
        if failed is not None and failed != self.failed:
            self.failed = failed
            if self._bar is not None:
                self._bar.set_postfix(failed=self.failed, refresh=False)
        if self._bar is not None:
            self._bar.update(self.done - before)
        elif self.done // self._every_n > before // self._every_n or self.done == self.total \
                or self._clock() - self._last_line >= self._every_s:
            self._line()
