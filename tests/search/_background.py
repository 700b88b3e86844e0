"""The labelled-set evaluation (``tests/search/test_labelled.py``), started when the session's tests
are collected, in a process of its own at a lower CPU priority, so that its minutes of e5
embedding run beside the rest of the suite, which mostly waits (on servers, deadlines, sockets),
instead of after it. The test runs last and takes the result.

The process is a session of its own (its server with it): the end of the pytest session stops
it, and the temporary directory it worked in (``TMPDIR``) is removed, however the run ended.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# ``nice`` of the evaluation's server: low enough that the suite's own servers come first, high
# enough that its start fits ManagedServer's 30 s on a busy machine. Its e5 workers add 10 more.
NICENESS = 5
STOP_GRACE_S = 10
EVALUATION: BackgroundEvaluation | None = None  # the session's, started by tests/conftest.py

_RUNNER = """
import json, sys
import trio
from everos.search import METHODS
from everos.testing.search_eval import run_evaluation
result = trio.run(run_evaluation, METHODS, "all", json.loads(sys.argv[1]))
sys.stdout.write(json.dumps(result))
"""


class BackgroundEvaluation:
    """One evaluation in a subprocess: :meth:`start`, then :meth:`result` or :meth:`stop`."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.settings = settings
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="everos-labelled-"))
        work = self._dir / "tmp"
        work.mkdir()
        with open(self._dir / "result.json", "wb") as out, open(self._dir / "stderr.txt", "wb") as err:
            self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and code
                [sys.executable, "-c", _RUNNER, json.dumps(self.settings)], stdout=out, stderr=err,
                env={**os.environ, "TMPDIR": str(work)}, start_new_session=True,
                preexec_fn=lambda: os.nice(NICENESS))

    def result(self, timeout_s: float) -> dict[str, Any]:
        """Wait up to ``timeout_s`` for the evaluation's figures (``run_evaluation``'s dict).

        Raises:
            AssertionError: the evaluation failed or did not finish in time (its stderr's end).
        """
        assert self._process is not None and self._dir is not None, "the evaluation was not started"
        try:
            code = self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the labelled-set evaluation did not finish within {timeout_s:g} s") from None
        if code != 0:
            tail = (self._dir / "stderr.txt").read_text(errors="replace")[-4000:]
            raise AssertionError(f"the labelled-set evaluation exited with {code}:\n{tail}")
        return json.loads((self._dir / "result.json").read_text(encoding="utf-8"))

    def stop(self) -> None:
        """Stop the evaluation and its server if still running (SIGTERM to the process group,
        SIGKILL after ``STOP_GRACE_S``); remove its directory. Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE_S
            while process.poll() is None or _signal_group(process.pid, 0):
                if time.monotonic() > deadline:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait()
                    break
                time.sleep(0.1)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the process group; False when no process is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True
