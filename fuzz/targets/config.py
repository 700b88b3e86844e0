"""Target: the config loader (``everos/config/_load.py`` ``load_config``), with a fuzzed
``everos.toml`` and fuzzed ``EVEROS_<SECTION>__<KEY>`` environment variables.

The contract: a file or variable that is not allowed stops startup with one ``ConfigError``,
nothing else. Invariants of a config that loads: every value is of its declared type and passes
its declaration again (``check_value``), a number is finite, ``everos config show`` can print every
value (``display_value``), and the ``everos.toml`` that ``render_template`` writes for it loads
back to the same config.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import get_type_hints

from everos.config import CONFIG_FILENAME, display_value, iter_settings, load_config, render_template
from everos.config._settings import section_class
from everos.config._validate import check_value
from everos.errors import ConfigError

__all__ = ["check_config", "check_config_bytes", "config_input_from_bytes"]

_ENV_SEPARATOR = b"\n%%env\n"


def config_input_from_bytes(data: bytes) -> tuple[bytes, dict[str, str]]:
    """A fuzzer input as ``(everos.toml bytes, environment)``: the file, then after a line
    ``%%env`` one ``NAME=value`` per line (names prefixed with ``EVEROS_`` when they lack it)."""
    toml, _, env_block = data.partition(_ENV_SEPARATOR)
    environ: dict[str, str] = {}
    for line in env_block.decode("utf-8", "surrogateescape").split("\n"):  # as os.environ decodes
        name, equals, value = line.partition("=")
        if equals and name and "\x00" not in name + value:
            environ[name if name.startswith("EVEROS_") else "EVEROS_" + name] = value
    return toml, environ


def check_config(root: Path, toml: bytes | None, environ: Mapping[str, str]) -> None:
    """Load ``root`` with ``toml`` as its ``everos.toml`` (none: no file) and ``environ``; check the
    contract. ``root`` is a directory the check may write ``everos.toml`` and ``render/`` in."""
    path = root / CONFIG_FILENAME
    if toml is None:
        path.unlink(missing_ok=True)
    else:
        path.write_bytes(toml)
    try:
        loaded = load_config(root, environ=environ, require_file=False)
    except ConfigError as exc:
        assert exc.message and isinstance(exc.message, str)
        return
    hints = {}
    for section, key, value, f in iter_settings(loaded.config):
        typ = hints.setdefault(section, get_type_hints(section_class(section)))[key]
        assert check_value(section, key, value, f, typ, "the check") == value
        if isinstance(value, float):
            assert math.isfinite(value), (section, key, value)
        if isinstance(value, str):
            value.encode("utf-8")
        assert isinstance(display_value(value, f), str)
    again_root = root / "render"
    again_root.mkdir(exist_ok=True)
    (again_root / CONFIG_FILENAME).write_text(render_template(loaded.config), encoding="utf-8")
    again = load_config(again_root, environ={})
    assert dataclasses.asdict(again.config) == dataclasses.asdict(loaded.config)


def check_config_bytes(root: Path, data: bytes) -> None:
    """:func:`check_config` of the file and environment :func:`config_input_from_bytes` makes of ``data``."""
    check_config(root, *config_input_from_bytes(data))
