"""atheris: the config loader, on an ``everos.toml`` and environment variables in one input.

    python fuzz/fuzz_config.py -max_total_time=3600 [corpus dir]

An input is the file's bytes, then after a line ``%%env`` one ``NAME=value`` per line
(``fuzz/targets/config.py`` ``config_input_from_bytes``). The loader reads a root in a temporary
directory, removed at exit.
"""

import atexit
import shutil
import tempfile
from pathlib import Path

import _atheris


def in_a_root(check):
    root = Path(tempfile.mkdtemp(prefix="everos-fuzz-config-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return lambda data: check(root, data)


if __name__ == "__main__":
    _atheris.run("config", "check_config_bytes", libraries=("tomllib",), wrap=in_a_root)
