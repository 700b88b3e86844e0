"""atheris: the config loader, on an ``everos.toml`` and environment variables in one input.

    python fuzz/fuzz_config.py -max_total_time=3600 [corpus dir]

An input is the file's bytes, then after a line ``%%env`` one ``NAME=value`` per line
(``fuzz/targets/config.py`` ``config_input_from_bytes``). The loader reads a root in a temporary
directory named for this process. libFuzzer ends the process without Python's exit handlers, so
a run removes the directories of earlier runs whose process is gone instead.
"""

import os
import shutil
import tempfile
from pathlib import Path

import _atheris

PREFIX = "everos-fuzz-config-"


def in_a_root(check):
    for stale in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        pid = stale.name.removeprefix(PREFIX).split("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
    return lambda data: check(root, data)


if __name__ == "__main__":
    _atheris.run("config", "check_config_bytes", libraries=("tomllib",), wrap=in_a_root)
