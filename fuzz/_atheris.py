"""What every atheris entry point shares: the import path, the instrumentation and the run.

Each ``fuzz/fuzz_<target>.py`` is ``python fuzz/fuzz_<target>.py [libFuzzer flags] [corpus dir]``
(an hour: ``-max_total_time=3600``); without a corpus directory it starts from
``fuzz/corpus/<target>/`` (and writes what it finds there: give a directory of your own to keep
the checkout clean). A failed check raises; libFuzzer stops and writes the input as
``crash-<sha1>`` in the current directory (``-artifact_prefix=DIR/`` puts it elsewhere).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
# ``python fuzz/fuzz_x.py`` puts fuzz/ on sys.path, not the checkout: make ``import fuzz`` work.
if str(FUZZ_DIR.parent) not in sys.path:
    sys.path.insert(0, str(FUZZ_DIR.parent))

Check = Callable[[bytes], None]


def run(target: str, check_name: str, *, libraries: Sequence[str] = (),
        wrap: Callable[[Check], Check] | None = None) -> None:
    """Fuzz ``fuzz.targets.<target>.<check_name>`` (one input's bytes) with atheris: everos, the
    target and ``libraries`` instrumented for coverage; ``wrap`` adapts the check (a directory
    of its own, say)."""
    import atheris  # the fuzz extra; the targets and the hypothesis tests do not need it

    with atheris.instrument_imports(include=["everos", "fuzz", *libraries]):
        module = importlib.import_module(f"fuzz.targets.{target}")
    check: Check = getattr(module, check_name)
    if wrap is not None:
        check = wrap(check)
    argv = list(sys.argv)
    if all(arg.startswith("-") for arg in argv[1:]):
        argv.append(str(FUZZ_DIR / "corpus" / target))
    atheris.Setup(argv, check)
    atheris.Fuzz()
