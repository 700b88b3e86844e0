"""The configuration as text: the commented ``everos.toml`` template that ``everos init`` writes
and the values ``everos config show`` prints (secrets masked), both rendered from the declarations
in :mod:`._settings`, so the docs cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_type_hints

from everos.config._settings import SECTIONS, Config, section_class
from everos.config._validate import describe_allowed

__all__ = ["display_value", "iter_settings", "render_template"]


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot render {value!r} as TOML")


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string but for DEL, which TOML wants escaped; without
    # ensure_ascii, since TOML has no surrogate-pair escapes for characters beyond the BMP.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def iter_settings(config: Config):
    """Yield ``(section, key, value, field)`` for every setting, in declaration order."""
    for section, attr in SECTIONS.items():
        section_value = getattr(config, attr)
        for f in dataclasses.fields(section_value):
            yield section, f.name, getattr(section_value, f.name), f


def display_value(value: Any, f: dataclasses.Field) -> str:
    """The value as ``config show`` prints it; secrets are masked."""
    if f.metadata.get("secret") and value:
        return json.dumps(value[:2] + "***" if len(value) > 8 else "***")
    return _toml_value(value)


def render_template(config: Config | None = None) -> str:
    """The commented ``everos.toml`` that ``everos init`` writes: every section and key, each with
    its meaning, allowed values and default. It parses back to ``config`` (defaults when None)."""
    config = config or Config()
    defaults = Config()
    lines = [
        "# everos configuration. Every key is shown with its default; edit what you need.",
        "# Precedence: defaults < this file < EVEROS_<SECTION>__<KEY> environment < command-line flags.",
        "# `everos config show` prints the effective values and where each came from.",
        "",
    ]
    current = None
    hints_cache: dict[str, dict[str, Any]] = {}
    for section, key, value, f in iter_settings(config):
        if section != current:
            if current is not None:
                lines.append("")
            lines.append(f"[{section}]")
            current = section
            hints_cache[section] = get_type_hints(section_class(section))
        default = getattr(getattr(defaults, SECTIONS[section]), key)
        allowed = describe_allowed(f, hints_cache[section][key])
        lines.append(f"# {f.metadata['help']} Allowed: {allowed}. Default: {_toml_value(default)}.")
        lines.append(f"{key} = {_toml_value(value)}")
    lines.append("")
    return "\n".join(lines)
